"""The job store: jobs, their events and the outbox (storage/outbox.py), changed together in one transaction.

Every operation of the seed's RedisService has its counterpart here (save/get/update/delete a job; its four lists
are list_jobs by kind and state). A state change checks the state machine, records an event and queues the
notice people must get, atomically: a crash can never leave a job changed but its notice unsent.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import PurePath
from typing import Any

import aiosqlite

from storage.errors import JobNotFound, StaleState, StillActive
from storage.models import (
    Event,
    ExportState,
    Job,
    JobState,
    Kind,
    Progress,
    Purpose,
    check_export_transition,
    check_transition,
)
from storage.notices import Notice
from storage.outbox import Outbox
from storage.rows import JobRows, to_row
from storage.slack_cards import SlackCards
from storage.web_sessions import WebSessions

ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/1/i/l/o: easy to read back and type in Slack
ID_LENGTH = 5


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


def new_job_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


class JobStore(Outbox, WebSessions, SlackCards):
    """Jobs and their events (and, from Outbox, the notices; from WebSessions and SlackCards, the web page's sessions
    and Slack's cards), on one connection (storage/connection.py)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__(conn)
        self._rows = JobRows()  # Jobs already built, by their rows
        self._counted: tuple[str, int, float, int] | None = None  # the last search text counted (_matches)

    # ---- jobs -------------------------------------------------------------------------------------------------

    async def create(
        self,
        job: Job,
        *,
        event: str = "job created",
        event_data: dict[str, Any] | None = None,
        notice: Notice | None = None,
    ) -> Job:
        """Save a new job under a fresh id (the one on `job` is replaced), with its first event and notice."""
        now = time.time()
        async with self._tx() as db:
            while True:
                job_id = new_job_id()
                async with db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)) as cur:
                    if await cur.fetchone() is None:
                        break
            async with db.execute("SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM jobs") as cur:
                seq_row = await cur.fetchone()
            job = job.replace(id=job_id, created_at=now, updated_at=now, name=job.name or PurePath(job.output_dir).name)
            row = to_row(job) | {"queue_seq": seq_row[0] if seq_row else 1}
            cols = ", ".join(row)
            await db.execute(f"INSERT INTO jobs ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
            await self._event(db, Event(job_id, "created", event, event_data or {}), now)
            if notice is not None:
                await self._notice(db, Notice(job_id, notice.facts), now)
        return job

    async def get(self, job_id: str) -> Job | None:
        rows = await self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return self._rows.job(rows[0]) if rows else None

    async def require(self, job_id: str) -> Job:
        job = await self.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def by_idempotency_key(self, key: str) -> Job | None:
        rows = await self._read("SELECT * FROM jobs WHERE idempotency_key = ?", (key,))
        return self._rows.job(rows[0]) if rows else None

    async def update(
        self,
        job_id: str,
        *,
        state: JobState | None = None,
        expect: Iterable[JobState] | None = None,
        export_state: ExportState | None = None,
        progress: Progress | None = None,
        event: str | None = None,
        event_kind: str | None = None,
        event_data: dict[str, Any] | None = None,
        notice: Notice | None = None,
        **changes: Any,
    ) -> Job:
        """Change a job; a state change is checked against the state machine (IllegalTransition otherwise).

        `expect` guards against races: the update applies only if the job is still in one of those states
        (StaleState otherwise). The event and the notice, if given, are written in the same transaction.
        """
        now = time.time()
        async with self._tx() as db:
            async with db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
                row = await cur.fetchone()
            if row is None:
                raise JobNotFound(job_id)
            job = self._rows.job(row)
            if expect is not None and job.state not in set(expect):
                raise StaleState(job_id, str(job.state), tuple(sorted(str(e) for e in expect)))
            if state is not None and state != job.state:
                check_transition(job.state, state)
                changes["state"] = state
                if state is JobState.QUEUED:  # a restart goes to the back of the queue
                    async with db.execute("SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM jobs") as cur:
                        seq = await cur.fetchone()
                    changes["queue_seq"] = seq[0] if seq else 1
            if export_state is not None and export_state != job.export_state:
                check_export_transition(job.export_state, export_state)
                changes["export_state"] = export_state
            new = job.replace(**{k: v for k, v in changes.items() if k != "queue_seq"})
            if progress is not None:
                new = new.replace(progress=progress)
            row_new = to_row(new)
            old = dict(zip(row.keys(), row, strict=True))
            diff = {k: v for k, v in row_new.items() if old[k] != v and k != "id"}
            if "queue_seq" in changes:
                diff["queue_seq"] = changes["queue_seq"]
            if diff:
                diff["updated_at"] = now
                sets = ", ".join(f"{k} = ?" for k in diff)
                await db.execute(
                    f"UPDATE jobs SET {sets}, version = version + 1 WHERE id = ?", [*diff.values(), job_id]
                )
            if event is not None:
                kind = event_kind or (str(state) if state is not None else "update")
                await self._event(db, Event(job_id, kind, event, event_data or {}), now)
            if notice is not None:
                await self._notice(db, notice, now)
        return new.replace(updated_at=now) if diff else new

    async def delete(self, job_id: str, *, notice: Notice | None = None) -> None:
        """Forget a job and its events (its files stay); refuses while its process may run (created and queued
        jobs go: the caller has taken a queued one out of any backend's queue)."""
        async with self._tx() as db:
            async with db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)) as cur:
                row = await cur.fetchone()
            if row is None:
                raise JobNotFound(job_id)
            if JobState(row[0]).is_under_way:
                raise StillActive(job_id, str(row[0]))
            await db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            if notice is not None:
                await self._notice(db, notice, time.time())

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

    async def set_note(self, job_id: str, note: str) -> Job:
        """Replace a job's note (\"\" takes it away)."""
        return await self.update(job_id, note=note, event="note changed", event_kind="note")

    async def active(self) -> list[Job]:
        """Jobs not yet ended, in arrival order (queue_seq): the queue's first come, first served."""
        states = [str(s) for s in JobState if s.is_active]
        sql = f"SELECT * FROM jobs WHERE state IN ({', '.join('?' * len(states))}) ORDER BY queue_seq"
        return [self._rows.job(r) for r in await self._read(sql, states)]

    async def exporting(self) -> list[Job]:
        return [self._rows.job(r) for r in await self._read("SELECT * FROM jobs WHERE export_state = 'exporting'")]

    async def trying(self) -> list[Job]:
        """Jobs with a try session (waiting, loading or loaded: runner/trying.py)."""
        return [self._rows.job(r) for r in await self._read("SELECT * FROM jobs WHERE try_state != 'none'")]

    async def holding(self) -> list[Job]:
        """Jobs that may hold GPUs (leases.held): those not ended, in arrival order, then those exporting, then
        those with a try session (each job once)."""
        jobs = {j.id: j for j in await self.active()}
        for job in [*await self.exporting(), *await self.trying()]:
            jobs.setdefault(job.id, job)
        return list(jobs.values())

    async def line(self) -> list[tuple[Job, Purpose]]:
        """Who waits for GPUs, in arrival order: queued jobs (their training) and waiting try sessions, one line
        (a try's place, `try_seq`, falls between the jobs' queue_seq)."""
        sql = """SELECT *, 'train' AS line_purpose, queue_seq AS line_seq FROM jobs WHERE state = 'queued'
                 UNION ALL
                 SELECT *, 'try' AS line_purpose, try_seq AS line_seq FROM jobs WHERE try_state = 'waiting'
                 ORDER BY line_seq, line_purpose"""
        rows = await self._read(sql)
        keys = tuple(rows[0].keys()) if rows else ()
        return [(self._rows.job(r, keys), "try" if r["line_purpose"] == "try" else "train") for r in rows]

    async def next_try_seq(self) -> float:
        """A try's place in line: after every job queued so far, before any queued later (queue_seq + 1)."""
        rows = await self._read("SELECT COALESCE(MAX(queue_seq), 0) + 0.5 FROM jobs")
        return float(rows[0][0]) if rows else 0.5

    async def version(self, job_id: str) -> int | None:
        """A counter bumped by every change of the job: cheap change detection for the job card."""
        rows = await self._read("SELECT version FROM jobs WHERE id = ?", (job_id,))
        return int(rows[0][0]) if rows else None

    # ---- events -----------------------------------------------------------------------------------------------

    async def add_event(
        self, job_id: str, kind: str, message: str, data: dict[str, Any] | None = None, *, notice: Notice | None = None
    ) -> None:
        now = time.time()
        async with self._tx() as db:
            await self._event(db, Event(job_id, kind, message, data or {}), now)
            if notice is not None:
                await self._notice(db, notice, now)

    async def events(self, job_id: str) -> list[Event]:
        rows = await self._read(
            "SELECT id, job_id, kind, message, data, at FROM events WHERE job_id = ? ORDER BY id", (job_id,)
        )
        return [Event(r["job_id"], r["kind"], r["message"], json.loads(r["data"]), r["at"], r["id"]) for r in rows]

    async def events_after(self, after: int, *, job_id: str | None = None, limit: int = 500) -> list[Event]:
        """Events with an id above `after`, oldest first (of one job, or of every job): what a stream sends next."""
        sql = "SELECT id, job_id, kind, message, data, at FROM events WHERE id > ?"
        params: list[Any] = [after]
        if job_id is not None:
            sql += " AND job_id = ?"
            params.append(job_id)
        rows = await self._read(sql + " ORDER BY id LIMIT ?", [*params, limit])
        return [Event(r["job_id"], r["kind"], r["message"], json.loads(r["data"]), r["at"], r["id"]) for r in rows]

    # ---- internals --------------------------------------------------------------------------------------------

    @staticmethod
    async def _event(db: aiosqlite.Connection, event: Event, now: float) -> None:
        await db.execute(
            "INSERT INTO events (job_id, kind, message, data, at) VALUES (?, ?, ?, ?, ?)",
            (event.job_id, event.kind, event.message, json.dumps(event.data), now),
        )


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
