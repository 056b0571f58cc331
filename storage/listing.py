"""Lists of jobs: pages in a sort's order (newest, longest, lowest final loss), filtered by kind, state and owner,
searched by a substring of the name, folder, owner or id, counted. Each is read along an index: a page of 50 and a
search answer in milliseconds with 100,000 jobs in the store (`python -m bench history`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import aiosqlite

from storage.connection import Connection
from storage.models import Job, JobState, Kind
from storage.rows import JobRows


@dataclass(frozen=True)
class ListPosition:
    """A place in a list's order: the sort key of the job listed there, not the job. `key`: its value of the
    sort's own column (by duration or final loss; None: it has none, and such jobs come last)."""

    created_at: float
    seq: int
    key: float | None = None


class SortBy(StrEnum):
    CREATED = "created"
    DURATION = "duration"  # from start to end; jobs that have not ended come last
    LOSS = "loss"  # the last logged train loss; jobs without one come last


@dataclass(frozen=True)
class Sort:
    by: SortBy = SortBy.CREATED
    descending: bool = True


NEWEST = Sort()
_SORT_KEYS = {SortBy.CREATED: None, SortBy.DURATION: "(finished_at - started_at)", SortBy.LOSS: "loss"}  # indexed


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a list holds: of a kind, in some states, of an owner, and `text` a case-insensitive substring
    of their name, output folder, owner or id."""

    kind: Kind | None = None
    states: tuple[JobState, ...] | None = None
    owner: str | None = None
    text: str | None = None


EVERY_JOB = JobFilter()
TRIGRAM = 3  # the FTS5 trigram index finds substrings of 3 characters or more; shorter ones are looked for in full
FEW_MATCHES = 2000  # a search text held by more jobs is looked for along the list's index (1 job in 50 or more)
COUNT_AT_MOST = 1000  # what a count that must read the jobs one by one counts up to


@dataclass(frozen=True)
class Count:
    """How many jobs a list holds: `n`, or more than `n - 1` where not `exact`."""

    n: int
    exact: bool = True


@dataclass(frozen=True)
class Page:
    """Up to `limit` jobs of a list, and where the pages before (`prev`) and after (`next`) it begin: None where
    there are no more."""

    jobs: list[Job]
    next: ListPosition | None
    prev: ListPosition | None


class JobLists(Connection):
    """The store's lists (JobStore's): its jobs, read by the page."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__(conn)
        self._rows = JobRows()  # Jobs already built, by their rows
        self._counted: tuple[str, int, float, int] | None = None  # the last search text counted (_matches)

    async def list_jobs(
        self,
        *,
        kind: Kind | None = None,
        states: Sequence[JobState] | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """Newest first. The seed's lists: LLM jobs (kind=LLM), VLM jobs, by state (states=[...]), all."""
        where = JobFilter(kind, tuple(states) if states is not None else None)
        return self._jobs(await self._listed(where, NEWEST, limit, None))

    async def page(
        self,
        where: JobFilter = EVERY_JOB,
        *,
        sort: Sort = NEWEST,
        limit: int,
        after: ListPosition | None = None,
        before: ListPosition | None = None,
    ) -> Page:
        """Up to `limit` jobs in `sort`'s order, listed after the position `after` (None: from the first), or the
        `limit` listed just before `before`. A position is not a row: it holds while the jobs around it are
        deleted. Each sort is read along an index (migrations 3 and 4, and job_search's); a search, see
        `_filtered`."""
        if before is not None:
            rows = await self._listed(where, sort, limit + 1, before, backwards=True)
            more, rows = len(rows) > limit, rows[:limit][::-1]
            jobs = self._jobs(rows)
            return Page(jobs, _position(rows[-1], sort) if rows else None, _position(rows[0], sort) if more else None)
        rows = await self._listed(where, sort, limit + 1, after)
        more, rows = len(rows) > limit, rows[:limit]
        prev = _position(rows[0], sort) if rows and after is not None else None
        return Page(self._jobs(rows), _position(rows[-1], sort) if more else None, prev)

    async def count(self, where: JobFilter = EVERY_JOB, *, at_most: int = COUNT_AT_MOST) -> Count:
        """How many jobs the filter holds: exactly where an index counts them (no search); a search up to
        `at_most`, and `at_most + 1` (not exact) for more."""
        sql, params, matches = await self._filtered(where)
        if not (where.text and where.text.strip()):
            rows = await self._read("SELECT count(*) FROM jobs" + (f" WHERE {sql}" if sql else ""), params)
            return Count(int(rows[0][0]))
        if matches is not None and replace(where, text=None) == EVERY_JOB and at_most <= FEW_MATCHES:
            n = matches  # the trigram index counted them (up to FEW_MATCHES + 1)
        else:
            rows = await self._read(
                f"SELECT count(*) FROM (SELECT 1 FROM jobs WHERE {sql} LIMIT ?)", [*params, at_most + 1]
            )
            n = int(rows[0][0])
        return Count(min(n, at_most + 1), exact=n <= at_most)

    async def position(self, job_id: str, sort: Sort = NEWEST) -> ListPosition | None:
        """Where a job stands in `sort`'s order (None: no such job)."""
        rows = await self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _position(rows[0], sort) if rows else None

    async def _listed(
        self, where: JobFilter, sort: Sort, limit: int | None, after: ListPosition | None, backwards: bool = False
    ) -> list[aiosqlite.Row]:
        filtered = await self._filtered(where)
        rows: list[aiosqlite.Row] = []
        for sql, params in _segments(filtered[:2], sort, after, backwards):
            left = None if limit is None else limit - len(rows)
            if left is not None and left <= 0:
                break
            rows += await self._read(sql + ("" if left is None else f" LIMIT {int(left)}"), params)
        return rows

    async def _filtered(self, where: JobFilter) -> tuple[str, list[Any], int | None]:
        """The filter as SQL, and how many jobs' text holds its text, up to FEW_MATCHES + 1 (None: no text, or
        one too short to count by the trigram index). A text few jobs hold is looked up in job_search and its jobs
        sorted; one many hold, on the jobs met along the list's index (50 of them are near)."""
        text = (where.text or "").strip()
        matches = None
        if len(text) >= TRIGRAM:
            matches = await self._matches(text)
        sql, params = _where(where, text, indexed=matches is not None and matches <= FEW_MATCHES)
        return sql, params, matches

    async def _matches(self, text: str) -> int:
        """How many jobs' search text holds `text`, counted by the trigram index up to FEW_MATCHES + 1 (a count
        of them all reads every match: 10 ms for 10,000). A page and its count ask twice in a row: the answer is
        kept while nothing was written here, for a second at most."""
        seq, now = self.changes.seq, time.monotonic()
        if self._counted is not None and self._counted[:2] == (text, seq) and now - self._counted[2] < 1.0:
            return self._counted[3]
        rows = await self._read(
            "SELECT count(*) FROM (SELECT rowid FROM job_search WHERE job_search MATCH ? LIMIT ?)",
            (_phrase(text), FEW_MATCHES + 1),
        )
        self._counted = (text, seq, now, int(rows[0][0]))
        return self._counted[3]

    def _jobs(self, rows: Sequence[aiosqlite.Row]) -> list[Job]:
        keys = tuple(rows[0].keys()) if rows else ()  # once a page: each row's Job is read by them
        return [self._rows.job(r, keys) for r in rows]


def _where(where: JobFilter, text: str, *, indexed: bool) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if where.kind is not None:
        clauses.append("kind = ?")
        params.append(str(where.kind))
    if where.states is not None:
        clauses.append(f"state IN ({', '.join('?' * len(where.states))})")
        params.extend(str(s) for s in where.states)
    if where.owner is not None:
        clauses.append("user_id = ?")
        params.append(where.owner)
    if text and indexed:
        clauses.append("rowid IN (SELECT rowid FROM job_search WHERE job_search MATCH ?)")
        params.append(_phrase(text))
    elif text:
        clauses.append("instr(search_text, ?) > 0")
        params.append(text.lower())
    return " AND ".join(clauses), params


def _phrase(text: str) -> str:
    """`text` as one FTS5 phrase (its trigrams in a row: the text as a substring, case folded); quotes doubled, so
    nothing in it is read as FTS5's syntax."""
    return '"' + text.replace('"', '""') + '"'


def _segments(
    where: tuple[str, list[Any]], sort: Sort, after: ListPosition | None, backwards: bool = False
) -> list[tuple[str, list[Any]]]:
    """The queries that list, in order, the jobs after `after` (`backwards`: those before it, nearest first). For
    a sort by a column, the jobs with a value in it come first (along its index), then those without (by
    creation). Ties go by creation, in the sort's direction."""
    filtered, params = where
    key = _SORT_KEYS[sort.by]
    way, past = ("DESC", "<") if sort.descending != backwards else ("ASC", ">")
    order = f"created_at {way}, queue_seq {way}"

    def query(conds: list[str], values: list[Any], by: str) -> tuple[str, list[Any]]:
        conds = [c for c in (filtered, *conds) if c]
        sql = "SELECT * FROM jobs" + (f" WHERE {' AND '.join(conds)}" if conds else "") + f" ORDER BY {by}"
        return sql, params + values

    by_creation = ([f"(created_at, queue_seq) {past} (?, ?)"], [after.created_at, after.seq]) if after else ([], [])
    if key is None:
        return [query(*by_creation, order)]
    valued_order = f"{key} {way}, {order}"
    every_valued = query([f"{key} IS NOT NULL"], [], valued_order)
    every_unvalued = query([f"{key} IS NULL"], [], order)
    if after is None:
        return [every_unvalued, every_valued] if backwards else [every_valued, every_unvalued]
    if after.key is None:  # among the unvalued: those past it, and (backwards) every valued one
        unvalued = query([f"{key} IS NULL", *by_creation[0]], by_creation[1], order)
        return [unvalued, every_valued] if backwards else [unvalued]
    valued = query(
        [f"{key} IS NOT NULL", f"({key}, created_at, queue_seq) {past} (?, ?, ?)"],
        [after.key, after.created_at, after.seq],
        valued_order,
    )
    return [valued] if backwards else [valued, every_unvalued]


def _position(row: aiosqlite.Row, sort: Sort) -> ListPosition:
    key = _SORT_KEYS[sort.by]
    value = None
    if key is not None:
        started, finished = row["started_at"], row["finished_at"]
        value = (
            row["loss"]
            if sort.by is SortBy.LOSS
            else (finished - started if started is not None and finished is not None else None)
        )
    return ListPosition(float(row["created_at"]), int(row["queue_seq"]), None if value is None else float(value))
