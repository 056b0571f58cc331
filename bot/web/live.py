"""The pages' live parts as Server-Sent Events, woken by the store's change signal (storage/changes.py).

Every connection starts with the whole current picture (the table's rows; a job's panel, every metric's points and
the log's tail), so a browser that reconnects, after a network blip or a restart of `trainbot serve`, has caught
up without ids to replay. After that only what changed is sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.api.streams import LOG_POLL_S, SAFETY_POLL_S, _read_from
from runner.log_tail import clean_lines, read_log_tail
from runner.metrics import record_points
from storage.jobs import JobStore
from storage.models import Job

LOG_TAIL_LINES = 200


def message(event: str, data: str) -> str:
    """One SSE message; every line of `data` gets its own `data:` field (SSE joins them with newlines)."""
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {event}\n{body}\n"


async def table_feed(store: JobStore, render: Callable[[], Awaitable[str]]) -> AsyncIterator[str]:
    """The table's rows (one `rows` message of HTML) now and whenever they render differently."""
    yield "retry: 1000\n\n"
    shown = None
    while True:
        seen = store.changes.seq
        rows = await render()
        if rows != shown:
            shown = rows
            yield message("rows", rows)
        if await store.changes.wait(seen, timeout=SAFETY_POLL_S) == seen:
            yield ": keep-alive\n\n"


def metric_point(rec: dict[str, Any]) -> dict[str, float | int] | None:
    """The charts' point from one logging.jsonl record: its step and every metric it logged (runner/metrics'
    names); None for a record of no step."""
    found = record_points(rec)
    return None if found is None else {"step": found[0], **found[1]}


class _Lines:
    """Whole new lines of a growing file, from an offset."""

    def __init__(self, offset: int = 0) -> None:
        self.offset, self.pending = offset, b""

    def read(self, path: Path) -> list[str]:
        chunk = _read_from(path, self.offset)
        self.offset += len(chunk)
        done, _, self.pending = (self.pending + chunk).rpartition(b"\n")
        return done.decode(errors="replace").splitlines() if done else []


async def job_feed(store: JobStore, job_id: str,
                   render: Callable[[Job], Awaitable[str]]) -> AsyncIterator[str]:
    """`panel` (HTML) when the job changed, `points` (JSON) as swift logs metrics, `log` (JSON lines) as the log
    grows; `reset` first, so a reconnected page starts clean."""
    yield "retry: 1000\n\n" + message("reset", "{}")
    shown: Job | None = None
    points: _Lines | None = None
    log: _Lines | None = None
    while True:
        seen = store.changes.seq
        job = await store.get(job_id)
        if job is None:
            yield message("gone", "{}")
            return
        sent = False
        if job != shown:
            shown = job
            yield message("panel", await render(job))
            sent = True
        if job.run_dir:
            points = points or _Lines()
            found = [p for line in points.read(Path(job.run_dir) / "logging.jsonl")
                     if (p := _point(line)) is not None]
            if found:
                yield message("points", json.dumps(found))
                sent = True
        if (path := job.train_run.log) is not None:
            if log is None:
                log = _Lines(path.stat().st_size if path.exists() else 0)
                lines = clean_lines(read_log_tail(path))[-LOG_TAIL_LINES:]
            else:
                lines = clean_lines("\n".join(log.read(path)))
            if lines:
                yield message("log", json.dumps(lines, ensure_ascii=False))
                sent = True
        running = job.state.is_active
        if await store.changes.wait(seen, timeout=LOG_POLL_S if running else SAFETY_POLL_S) == seen and not sent \
                and not running:
            yield ": keep-alive\n\n"


def _point(line: str) -> dict[str, float | int] | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return metric_point(rec) if isinstance(rec, dict) else None
