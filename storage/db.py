"""Opening the one SQLite file: WAL, a busy timeout, and numbered migrations tracked by PRAGMA user_version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from storage.migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 10_000
CACHE_KIB = 32 * 1024


async def connect(path: Path) -> aiosqlite.Connection:
    """Open (creating if needed) the database and bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a transaction takes the write lock up front
    # and two writers never deadlock on a lock upgrade.
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = aiosqlite.Row
    await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = NORMAL")
    # room for the indexes of 100,000 jobs and the pages read often (SQLite's default, 2 MiB, is thrashed by a walk
    # through older pages, and the next count of the jobs re-reads its index: 4 ms instead of 0.4); used as needed
    await db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    await db.execute("PRAGMA foreign_keys = ON")
    await migrate(db)
    return db


async def schema_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(db: aiosqlite.Connection) -> int:
    """Apply the migrations newer than the file's user_version, each in its own transaction; safe to re-run."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        current = await schema_version(db)
        for number, sql in enumerate(MIGRATIONS[current:], start=current + 1):
            for statement in _statements(sql):
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {number}")
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


def _statements(sql: str) -> list[str]:
    """executescript() would COMMIT behind our back; run the statements one by one inside our transaction. A `;`
    ends a statement only where SQLite says it does (a trigger's body holds several)."""
    statements, pending = [], ""
    for part in sql.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    return statements
