"""The outbox: notices waiting for a front end to deliver them, in order per job, each retried on a schedule
stored with it (so a restarted bot keeps it)."""

from __future__ import annotations

import time
from typing import Any

import aiosqlite

from storage.connection import Connection
from storage.notices import Notice, decode, encode


class Outbox(Connection):
    """Notices are written with the change they tell of (storage/jobs.py: create, update, add_event, delete)."""

    async def due_notices(self, now: float | None = None, limit: int = 100) -> list[Notice]:
        """For each job, its oldest undelivered notice if it is due: delivery stays in order per job."""
        now = time.time() if now is None else now
        sql = """
            SELECT o.* FROM outbox o
            JOIN (SELECT job_id, MIN(id) AS first FROM outbox WHERE delivered_at IS NULL GROUP BY job_id) h
              ON o.id = h.first
            WHERE o.next_attempt_at <= ? ORDER BY o.id LIMIT ?"""
        return [_notice_from_row(r) for r in await self._read(sql, (now, limit))]

    async def next_notice_at(self) -> float | None:
        """When the soonest of the notices due_notices would hand out falls due (None: nothing to deliver)."""
        sql = """
            SELECT MIN(o.next_attempt_at) FROM outbox o
            JOIN (SELECT job_id, MIN(id) AS first FROM outbox WHERE delivered_at IS NULL GROUP BY job_id) h
              ON o.id = h.first"""
        rows = await self._read(sql)
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def pending_notices(self, job_id: str | None = None) -> list[Notice]:
        sql = "SELECT * FROM outbox WHERE delivered_at IS NULL"
        params: list[Any] = []
        if job_id is not None:
            sql += " AND job_id = ?"
            params.append(job_id)
        return [_notice_from_row(r) for r in await self._read(sql + " ORDER BY id", params)]

    async def notices(self, job_id: str) -> list[Notice]:
        return [_notice_from_row(r) for r in await self._read("SELECT * FROM outbox WHERE job_id = ? ORDER BY id",
                                                             (job_id,))]

    async def mark_delivered(self, notice_id: int, *, card_ts: str | None = None) -> None:
        """Delivered; `card_ts` (the job card's message, when this notice posted it) is saved with it."""
        async with self._tx() as db:
            await db.execute("UPDATE outbox SET delivered_at = ? WHERE id = ?", (time.time(), notice_id))
            if card_ts is not None:
                await db.execute("UPDATE jobs SET card_ts = ? WHERE id = (SELECT job_id FROM outbox WHERE id = ?)",
                                 (card_ts, notice_id))

    async def mark_failed(self, notice_id: int, *, retry_at: float, error: str) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
                (retry_at, error[:500], notice_id),
            )

    @staticmethod
    async def _notice(db: aiosqlite.Connection, notice: Notice, now: float) -> None:
        await db.execute(
            "INSERT INTO outbox (job_id, topic, data, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)",
            (notice.job_id, notice.topic, encode(notice.facts), now, now),
        )


def _notice_from_row(r: aiosqlite.Row) -> Notice:
    return Notice(
        job_id=r["job_id"], facts=decode(r["topic"], r["data"]), id=r["id"], created_at=r["created_at"],
        attempts=r["attempts"], next_attempt_at=r["next_attempt_at"], delivered_at=r["delivered_at"],
    )
