"""The job store: jobs, their events and the outbox (storage/outbox.py), changed together in one transaction.

Every operation of the seed's RedisService has its counterpart here (save/get/update/delete a job; its four lists
are list_jobs by kind and state, storage/listing.py). A change (a transition of runner/lifecycle.py) applies only
from the states it expects, and records its typed event (storage/events.py) and queues the notice people must get,
atomically: a crash can never leave a job changed but its notice unsent.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

import aiosqlite

from storage import events
from storage.actors import Actor
from storage.errors import JobNotFound, StaleState, StillActive
from storage.events import Event, EventFacts
from storage.listing import JobLists
from storage.models import ExportState, Job, JobState, Progress, Purpose
from storage.notices import Notice
from storage.outbox import Outbox
from storage.rows import to_row
from storage.slack_cards import SlackCards
from storage.slack_tries import SlackTryThreads
from storage.web_sessions import WebSessions

ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/1/i/l/o: easy to read back and type in Slack
ID_LENGTH = 5


def new_job_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


class JobStore(JobLists, Outbox, WebSessions, SlackCards, SlackTryThreads):
    """Jobs and their events (and, from JobLists, their lists and searches; from Outbox, the notices; from
    WebSessions, SlackCards and SlackTryThreads, the web page's sessions, Slack's cards and try threads), on one
    connection (storage/connection.py)."""

    # ---- jobs -------------------------------------------------------------------------------------------------

    async def create(self, job: Job, *, event: EventFacts | None = None, notice: Notice | None = None) -> Job:
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
            await self._event(db, Event(job_id, event or events.Created()), now)
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
        expect_export: Iterable[ExportState] | None = None,
        progress: Progress | None = None,
        event: EventFacts | None = None,
        notice: Notice | None = None,
        once_per_run: bool = False,
        **changes: Any,
    ) -> Job:
        """Change a job. Which change may follow which is runner/lifecycle.py's: its transitions come here with
        the states they start from, `expect` (and `expect_export`), and apply only if the job is still in one of
        those (StaleState otherwise), so a race is refused, never written over. The event and the notice, if given,
        are written in the same transaction; `once_per_run`: not if the job's current run already has that very
        event (two bots on one database watch the same run, and each reads its checkpoints and evals)."""
        now = time.time()
        async with self._tx() as db:
            async with db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
                row = await cur.fetchone()
            if row is None:
                raise JobNotFound(job_id)
            job = self._rows.job(row)
            if expect is not None and job.state not in set(expect):
                raise StaleState(job_id, str(job.state), tuple(sorted(str(e) for e in expect)))
            if expect_export is not None and job.export_state not in set(expect_export):
                raise StaleState(job_id, str(job.export_state), tuple(sorted(str(e) for e in expect_export)))
            if once_per_run and event is not None and await self._told_this_run(db, Event(job_id, event)):
                event, notice = None, None
            if state is not None and state != job.state:
                changes["state"] = state
                if state is JobState.QUEUED:  # a restart goes to the back of the queue
                    async with db.execute("SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM jobs") as cur:
                        seq = await cur.fetchone()
                    changes["queue_seq"] = seq[0] if seq else 1
            if export_state is not None and export_state != job.export_state:
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
                await self._event(db, Event(job_id, event), now)
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

    async def set_note(self, job_id: str, note: str, by: Actor | None = None) -> Job:
        """Replace a job's note ("" takes it away)."""
        return await self.update(job_id, note=note, event=events.NoteChanged(by=by, removed=not note))

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

    async def add_event(self, job_id: str, event: EventFacts, *, notice: Notice | None = None) -> None:
        now = time.time()
        async with self._tx() as db:
            await self._event(db, Event(job_id, event), now)
            if notice is not None:
                await self._notice(db, notice, now)

    async def events(self, job_id: str) -> list[Event]:
        rows = await self._read(f"SELECT {_EVENT_COLUMNS} FROM events WHERE job_id = ? ORDER BY id", (job_id,))
        return [_event(r) for r in rows]

    async def events_after(self, after: int, *, job_id: str | None = None, limit: int = 500) -> list[Event]:
        """Events with an id above `after`, oldest first (of one job, or of every job): what a stream sends next."""
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE id > ?"
        params: list[Any] = [after]
        if job_id is not None:
            sql += " AND job_id = ?"
            params.append(job_id)
        rows = await self._read(sql + " ORDER BY id LIMIT ?", [*params, limit])
        return [_event(r) for r in rows]

    # ---- internals --------------------------------------------------------------------------------------------

    @staticmethod
    async def _told_this_run(db: aiosqlite.Connection, event: Event) -> bool:
        """Whether the job has had this very event (kind and facts) since its run began (started, or restarted)."""
        sql = (
            "SELECT 1 FROM events WHERE job_id = ? AND kind = ? AND facts = ? AND id > COALESCE("
            "(SELECT MAX(id) FROM events WHERE job_id = ? AND kind IN (?, ?)), 0) LIMIT 1"
        )
        run_begins = (events.Started.kind, events.Restarted.kind)
        args = (event.job_id, event.kind, events.encode(event.facts), event.job_id, *run_begins)
        async with db.execute(sql, args) as cur:
            return await cur.fetchone() is not None

    @staticmethod
    async def _event(db: aiosqlite.Connection, event: Event, now: float) -> None:
        await db.execute(
            "INSERT INTO events (job_id, kind, message, facts, at) VALUES (?, ?, '', ?, ?)",
            (event.job_id, event.kind, events.encode(event.facts), now),
        )


_EVENT_COLUMNS = "id, job_id, kind, message, facts, at"


def _event(row: aiosqlite.Row) -> Event:
    return Event(row["job_id"], events.decode(row["kind"], row["facts"], row["message"]), row["at"], row["id"])
