"""The store's one aiosqlite connection: transactions that never interleave, and reads that see only what
was committed. JobStore (storage/jobs.py) and the outbox (storage/outbox.py) build on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self

import aiosqlite

from storage import db as dbmod
from storage.changes import Changes


class Connection:
    """One aiosqlite connection; an asyncio lock keeps tasks' transactions from interleaving on it."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._db = conn
        self._lock = asyncio.Lock()
        self.changes = Changes()  # bumped after every commit: lets loops sleep until there is work

    @classmethod
    async def open(cls, path: Path) -> Self:
        return cls(await dbmod.connect(path))

    async def close(self) -> None:
        await self._db.close()

    @asynccontextmanager
    async def _tx(self, *, quiet: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction; `quiet`: a change no loop waits for (a reader saying it is alive) wakes none."""
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                await self._db.execute("COMMIT")
            except BaseException:
                # A cancelled await does not take back what aiosqlite's thread was given: BEGIN (or COMMIT) may
                # still run after this. rollback() queues behind it and is a no-op outside a transaction; shielded
                # so that the task's own cancellation cannot skip it.
                await asyncio.shield(self._db.rollback())
                raise
            if not quiet:
                self.changes.notify()

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        """Every read takes the transactions' lock: on the one shared connection a read would otherwise run
        inside another task's open transaction and could see rows that are then rolled back. One trip to
        aiosqlite's thread (a cursor's execute, fetch and close would be three: each a hand-off and a wake-up)."""
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))
