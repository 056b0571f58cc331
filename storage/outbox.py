"""The outbox: the notices people must be told, kept in order (by id) until every front end that reads them has them.

Each front end that tells people is a named reader with its own place (`outbox_readers`): Slack (`slack`), each
open console (`console-…`). A reader registers before it reads: a new one starts after the newest notice, one that
comes back resumes where it was. It reads in one of two ways:
- in order (a console): `pending_notices(reader)`, then `mark_delivered(reader, *ids)` for what it told;
- each job in order, jobs side by side, each notice retried on its own schedule (Slack): `due_notices(reader)` hands
  out each job's oldest notice the reader has not delivered, `mark_failed` stores when to try it again (so a
  restarted bot keeps the schedule), `mark_delivered` says it went.
A reader's `position` is its low-water mark: it has every notice up to it. What it tried or delivered past it is in
`outbox_deliveries` until the position catches up. A notice is pruned once every reader is past it. A reader not
seen for its `keep_s` (registering again says it is alive) holds nothing back any more and is forgotten: a console
that never comes back, or a Slack bot gone for good, does not keep the outbox growing. No reader, nothing kept.
"""

from __future__ import annotations

import logging
import time

import aiosqlite

from storage.connection import Connection
from storage.notices import Notice, decode, encode

log = logging.getLogger(__name__)

# The ids of a reader's notices not yet delivered (params: the reader, twice): past its position, less those it
# delivered out of order. A reader not registered has no position: nothing is pending for it.
_UNTOLD = """id > (SELECT position FROM outbox_readers WHERE name = ?)
    AND id NOT IN (SELECT notice_id FROM outbox_deliveries WHERE reader = ? AND delivered_at IS NOT NULL)"""
# Notices with the reader's delivery state, from a subquery `h` of their ids (params: those of `h`, then the reader)
_WITH_STATE = """
    SELECT o.id, o.job_id, o.topic, o.data, o.created_at, COALESCE(d.attempts, 0) AS attempts,
           COALESCE(d.next_attempt_at, o.created_at) AS next_attempt_at, d.delivered_at
    FROM ({}) h JOIN outbox o ON o.id = h.id
    LEFT JOIN outbox_deliveries d ON d.reader = ? AND d.notice_id = o.id"""
# Of those, each job's oldest: delivery stays in order per job
_HEADS = _WITH_STATE.format(f"SELECT MIN(id) AS id FROM outbox WHERE {_UNTOLD} GROUP BY job_id")


class Outbox(Connection):
    """Notices are written with the change they tell of (storage/jobs.py: create, update, add_event, delete)."""

    # ---- readers ----------------------------------------------------------------------------------------------

    async def register_reader(self, name: str, *, keep_s: float) -> int:
        """Read as `name` from now on (a new reader starts after the newest notice; one that exists resumes), and
        say it is alive: call again within `keep_s`, or its unread notices stop waiting for it. Its position."""
        now = time.time()
        async with self._tx(quiet=True) as db:  # every minute from each reader: no loop need wake for it
            await self._prune(db, now)  # first: a reader gone too long comes back as a new one
            await db.execute(
                """INSERT INTO outbox_readers (name, position, seen_at, keep_s)
                   VALUES (?, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0), ?, ?)
                   ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at, keep_s = excluded.keep_s""",
                (name, now, keep_s),
            )
            async with db.execute("SELECT position FROM outbox_readers WHERE name = ?", (name,)) as cur:
                row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def leave(self, name: str) -> None:
        """The reader reads no more: what only it still wanted goes."""
        async with self._tx() as db:
            await db.execute("DELETE FROM outbox_readers WHERE name = ?", (name,))
            await db.execute("DELETE FROM outbox_deliveries WHERE reader = ?", (name,))
            await self._prune(db, time.time())

    async def reader_position(self, name: str) -> int | None:
        rows = await self._read("SELECT position FROM outbox_readers WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else None

    # ---- reading ----------------------------------------------------------------------------------------------

    async def pending_notices(
        self, reader: str, job_id: str | None = None, *, limit: int | None = None
    ) -> list[Notice]:
        """The reader's notices not yet delivered (of one job, or all), oldest first."""
        ids, params = f"SELECT id FROM outbox WHERE {_UNTOLD}", [reader, reader]
        if job_id is not None:
            ids += " AND job_id = ?"
            params.append(job_id)
        ids += " ORDER BY id" + (f" LIMIT {int(limit)}" if limit is not None else "")
        sql = _WITH_STATE.format(ids) + " ORDER BY o.id"
        return [_notice_from_row(r) for r in await self._read(sql, [*params, reader])]

    async def due_notices(self, reader: str, now: float | None = None, limit: int = 100) -> list[Notice]:
        """For each job, the reader's oldest notice not yet delivered, if it is due."""
        now = time.time() if now is None else now
        sql = f"{_HEADS} WHERE COALESCE(d.next_attempt_at, o.created_at) <= ? ORDER BY o.id LIMIT ?"
        return [_notice_from_row(r) for r in await self._read(sql, (reader, reader, reader, now, limit))]

    async def next_notice_at(self, reader: str) -> float | None:
        """When the soonest of the notices due_notices would hand out falls due (None: nothing to deliver)."""
        rows = await self._read(f"SELECT MIN(next_attempt_at) FROM ({_HEADS})", (reader, reader, reader))
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def notices(self, job_id: str) -> list[Notice]:
        """A job's notices still kept (some reader has not had them)."""
        return [
            _notice_from_row(r)
            for r in await self._read("SELECT * FROM outbox WHERE job_id = ? ORDER BY id", (job_id,))
        ]

    # ---- delivery ---------------------------------------------------------------------------------------------

    async def mark_delivered(self, reader: str, *notice_ids: int) -> None:
        """The reader has told these: its position moves up to its oldest notice not yet told, and what every
        reader has had is pruned."""
        now = time.time()
        async with self._tx() as db:
            async with db.execute("SELECT position FROM outbox_readers WHERE name = ?", (reader,)) as cur:
                row = await cur.fetchone()
            if row is None:
                return  # forgotten (gone too long): nothing waits for it
            position = int(row[0])
            await db.executemany(
                """INSERT INTO outbox_deliveries (reader, notice_id, delivered_at) VALUES (?, ?, ?)
                   ON CONFLICT (reader, notice_id) DO UPDATE SET delivered_at = excluded.delivered_at""",
                [(reader, i, now) for i in notice_ids if i > position],
            )
            await self._catch_up(db, reader, position, now)
            await self._prune(db, now)

    async def mark_failed(self, reader: str, notice_id: int, *, retry_at: float, error: str) -> None:
        async with self._tx() as db:
            await db.execute(
                """INSERT INTO outbox_deliveries (reader, notice_id, attempts, next_attempt_at, last_error)
                   VALUES (?, ?, 1, ?, ?)
                   ON CONFLICT (reader, notice_id) DO UPDATE SET attempts = attempts + 1,
                       next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error""",
                (reader, notice_id, retry_at, error[:500]),
            )

    # ---- internals --------------------------------------------------------------------------------------------

    @staticmethod
    async def _catch_up(db: aiosqlite.Connection, reader: str, position: int, now: float) -> None:
        """Move the reader's position up to just before its oldest notice not yet delivered."""
        async with db.execute(
            """SELECT MIN(o.id) FROM outbox o WHERE o.id > ? AND NOT EXISTS (
                       SELECT 1 FROM outbox_deliveries d
                       WHERE d.reader = ? AND d.notice_id = o.id AND d.delivered_at IS NOT NULL)""",
            (position, reader),
        ) as cur:
            first = (await cur.fetchone() or (None,))[0]
        if first is None:
            async with db.execute("SELECT MAX(id) FROM outbox") as cur:
                newest = (await cur.fetchone() or (None,))[0]
            position = max(position, int(newest or 0))
        else:
            position = int(first) - 1
        await db.execute("UPDATE outbox_readers SET position = ?, seen_at = ? WHERE name = ?", (position, now, reader))
        await db.execute("DELETE FROM outbox_deliveries WHERE reader = ? AND notice_id <= ?", (reader, position))

    @classmethod
    async def _prune(cls, db: aiosqlite.Connection, now: float) -> None:
        """Forget readers not seen for their keep_s, then the notices every reader left is past."""
        async with db.execute("SELECT name, position FROM outbox_readers WHERE seen_at + keep_s < ?", (now,)) as cur:
            gone = list(await cur.fetchall())
        for name, position in gone:
            log.warning(
                "outbox reader %s not seen for too long: forgotten, with what it had not read after %s", name, position
            )
            await db.execute("DELETE FROM outbox_readers WHERE name = ?", (name,))
            await db.execute("DELETE FROM outbox_deliveries WHERE reader = ?", (name,))
        await cls._drop_read(db, now)

    @staticmethod
    async def _drop_read(db: aiosqlite.Connection, now: float) -> None:
        """Delete the notices every reader still waited for is past (one gone too long counts as none)."""
        await db.execute(
            """DELETE FROM outbox WHERE id <= COALESCE(
                                (SELECT MIN(position) FROM outbox_readers WHERE seen_at + keep_s >= ?), ?)""",
            (now, 2**63 - 1),
        )

    async def _notice(self, db: aiosqlite.Connection, notice: Notice, now: float) -> None:
        await db.execute(
            "INSERT INTO outbox (job_id, topic, data, created_at) VALUES (?, ?, ?, ?)",
            (notice.job_id, notice.topic, encode(notice.facts), now),
        )
        await self._drop_read(db, now)  # with no reader, nothing is kept


def _notice_from_row(r: aiosqlite.Row) -> Notice:
    keys = r.keys()
    return Notice(
        job_id=r["job_id"],
        facts=decode(r["topic"], r["data"]),
        id=r["id"],
        created_at=r["created_at"],
        attempts=r["attempts"] if "attempts" in keys else 0,
        next_attempt_at=r["next_attempt_at"] if "next_attempt_at" in keys else r["created_at"],
        delivered_at=r["delivered_at"] if "delivered_at" in keys else None,
    )
