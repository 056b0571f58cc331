"""The pages' live parts: one Server-Sent Events stream a browser, carrying every open tab's view.

A browser's tabs share one stream (static/live-hub.js runs it in a SharedWorker), so ten open tabs hold one
connection, not ten (a browser allows six a host over HTTP/1.1). The stream is a POST whose body names each tab's
view and where it stands, its cursor: the version of each table row or panel part it shows, and how far into the
log and the metrics' points it has read. The server sends what differs from that, then only what changes, so a
reconnect (a network blip, a restart of `trainbot serve`, a tab opened or closed) neither repeats nor skips a thing.

Rows and panel parts are HTML from the pages' own templates, each keyed by its element id; relative times go out
empty (`<time data-at>`, the page writes them), else every row would change every second. Log lines and points are
JSON, with the byte offset they reach.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bot.http.api.streams import LOG_POLL_S, SAFETY_POLL_S, read_from
from runner.log_tail import TAIL_BYTES, clean_lines
from runner.metrics import record_points
from storage.jobs import JobStore
from storage.models import Job

LOG_TAIL_LINES = 200
MIN_GAP_S = 0.5  # at most two pictures a second: eight jobs' steps make one message, not eight
KEEP_ALIVE_S = 5.0  # what the page's watchdog waits for (three of these missed: the server is away)
READ_MOST = 1 << 20

Piece = tuple[str, str]  # (element id, HTML): a table row or a part of a job's panel
_TIME_TEXT = re.compile(r'(<time [^>]*\bdata-at="[^"]*">)[^<]*(</time>)')


class Cursor(BaseModel):
    """How far into a growing file (the log, logging.jsonl) a tab has read: whole lines up to byte `at`."""

    model_config = ConfigDict(extra="forbid")
    file: str = Field(max_length=40, description="the file's id, as the stream sent it")
    at: int = Field(ge=0, le=2**62)


class RowsView(BaseModel):
    """The jobs table under some filters, and the rows it shows now, in order, with their versions."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["rows"]
    query: str = Field("", max_length=1000, description="the page's filters, as in its URL")
    have: list[tuple[str, str]] = Field(default_factory=list, max_length=500)


class JobView(BaseModel):
    """A job's page: the versions of the panel's parts it shows, how far it read the log and the points."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["job"]
    job: str = Field(max_length=100)
    parts: dict[str, str] = Field(default_factory=dict, max_length=50)
    log: Cursor | None = None
    points: Cursor | None = None


ViewId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,40}$")]


class LiveRequest(BaseModel):
    """The body of `POST /web/live`: each tab's view by an id the tab chose."""

    model_config = ConfigDict(extra="forbid")
    views: dict[ViewId, Annotated[RowsView | JobView, Field(discriminator="kind")]] = Field(max_length=100)


def live_form(html: str) -> str:
    """A piece as the stream sends it: relative times emptied (the page writes them from `data-at`)."""
    return _TIME_TEXT.sub(r"\1\2", html)


def version(html: str) -> str:
    """A piece's version: what a tab's cursor holds and the stream compares (of its live form)."""
    return hashlib.blake2b(live_form(html).encode(), digest_size=6).hexdigest()


def cursor_of(pieces: list[Piece]) -> list[list[str]]:
    """What a page puts in its `data-live`: each piece it shows, with its version."""
    return [[key, version(html)] for key, html in pieces]


def message(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _file_id(path: Path) -> str:
    return hashlib.blake2b(str(path).encode(), digest_size=6).hexdigest()


class _Versions:
    """A view's pieces as the tab has them; `diff` says what to send to bring it to `pieces`."""

    def __init__(self, have: list[tuple[str, str]]) -> None:
        self.order = [key for key, _ in have]
        self.shown = dict(have)

    def diff(self, pieces: list[Piece]) -> dict[str, Any]:
        versioned = [(key, version(html), html) for key, html in pieces]
        changed = [[key, v, live_form(html)] for key, v, html in versioned if self.shown.get(key) != v]
        order = [key for key, _, _ in versioned]
        out: dict[str, Any] = {"set": changed} if changed else {}
        if order != self.order:
            out["order"] = order
        self.order, self.shown = order, {key: v for key, v, _ in versioned}
        return out


RenderRows = Callable[[str], Awaitable[list[Piece]]]
RenderParts = Callable[[Job], Awaitable[list[Piece]]]


class _Rows:
    """A tab's jobs table: the rows that changed (and the order, when it did), never the rest."""

    active = False

    def __init__(self, vid: str, view: RowsView, render: RenderRows) -> None:
        self.vid, self.query, self.render = vid, view.query, render
        self.versions = _Versions(view.have)

    async def step(self, store: JobStore, shared: dict[str, list[Piece]]) -> tuple[list[str], bool]:
        if self.query not in shared:  # tabs under the same filters share one rendering
            shared[self.query] = await self.render(self.query)
        change = self.versions.diff(shared[self.query])
        return ([message("rows", {"view": self.vid, **change})] if change else []), False


class _Job:
    """A tab's job page: the panel's parts that changed, the log's new lines and the new metric points."""

    def __init__(self, vid: str, view: JobView, render: RenderParts) -> None:
        self.vid, self.job_id, self.render = vid, view.job, render
        self.versions = _Versions(list(view.parts.items()))
        self.log, self.points = view.log, view.points
        self.rendered_at: int | None = None  # the store's change seq the parts were last rendered at
        self.active = True

    async def step(self, store: JobStore, shared: dict[str, list[Piece]]) -> tuple[list[str], bool]:
        seq = store.changes.seq
        job = await store.get(self.job_id)
        if job is None:
            return [message("gone", {"view": self.vid})], True
        self.active = job.state.is_active
        out = []
        if seq != self.rendered_at:  # the store changed (a log poll alone renders nothing)
            self.rendered_at = seq
            if change := self.versions.diff(await self.render(job)):
                out.append(message("parts", {"view": self.vid, **change}))
        if (path := job.train_run.log) is not None:
            lines, self.log, reset = _follow(path, self.log, _log_tail, _log_lines, backlog=TAIL_BYTES)
            if lines or reset:
                out.append(message("log", {"view": self.vid, "lines": lines, "reset": reset, **self.log.model_dump()}))
        if job.run_dir:
            points, self.points, reset = _follow(Path(job.run_dir) / "logging.jsonl", self.points, _all_points, _points)
            if points or reset:
                out.append(
                    message("points", {"view": self.vid, "points": points, "reset": reset, **self.points.model_dump()})
                )
        return out, False


Reader = Callable[[Path, int], tuple[list[Any], int]]


def _follow(
    path: Path,
    cursor: Cursor | None,
    fresh: Callable[[Path], tuple[list[Any], int]],
    more: Reader,
    backlog: int | None = None,
) -> tuple[list[Any], Cursor, bool]:
    """What a tab lacks of a growing file: what comes after its cursor; or a fresh start that replaces what it has
    (`reset`) for another file, a file that shrank, or more than `backlog` bytes behind (not worth sending line by
    line)."""
    file = _file_id(path)
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    if (
        cursor is None
        or cursor.file != file
        or size < cursor.at
        or (backlog is not None and size - cursor.at > backlog)
    ):
        items, at = fresh(path)
        return items, Cursor(file=file, at=at), True
    items, at = more(path, cursor.at)
    return items, Cursor(file=file, at=at), False


def _whole_lines(path: Path, at: int) -> tuple[bytes, int]:
    chunk = read_from(path, at, READ_MOST)
    end = chunk.rfind(b"\n") + 1
    return chunk[:end], at + end


def _log_lines(path: Path, at: int) -> tuple[list[str], int]:
    chunk, at = _whole_lines(path, at)
    return clean_lines(chunk.decode(errors="replace")), at


def _log_tail(path: Path) -> tuple[list[str], int]:
    """The log's last lines as people read them, and the offset just past the last whole one."""
    try:
        size = path.stat().st_size
    except OSError:
        return [], 0
    base = max(0, size - TAIL_BYTES)
    data = read_from(path, base, size - base)
    end = data.rfind(b"\n") + 1
    start = data.find(b"\n") + 1 if base else 0  # from a line start
    return clean_lines(data[start:end].decode(errors="replace"))[-LOG_TAIL_LINES:], base + end


def _points(path: Path, at: int) -> tuple[list[dict[str, float | int]], int]:
    chunk, at = _whole_lines(path, at)
    return [p for line in chunk.decode(errors="replace").splitlines() if (p := _point(line)) is not None], at


def _all_points(path: Path) -> tuple[list[dict[str, float | int]], int]:
    """Every point from the start (a long run's file is read a megabyte a call: the rest comes next time)."""
    return _points(path, 0)


def metric_point(rec: dict[str, Any]) -> dict[str, float | int] | None:
    """The charts' point from one logging.jsonl record: its step and every metric it logged (runner/metrics'
    names: `loss`, `eval_loss`, `learning_rate`, ...); None for a record of no step."""
    found = record_points(rec)
    return None if found is None else {"step": found[0], **found[1]}


def _point(line: str) -> dict[str, float | int] | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return metric_point(rec) if isinstance(rec, dict) else None


def followers(request: LiveRequest, rows: RenderRows, parts: RenderParts) -> dict[str, _Rows | _Job]:
    return {
        vid: _Rows(vid, view, rows) if isinstance(view, RowsView) else _Job(vid, view, parts)
        for vid, view in request.views.items()
    }


async def stream(store: JobStore, views: dict[str, _Rows | _Job]) -> AsyncIterator[str]:
    """`hello` (the server's clock, for the page's relative times), then each view's changes as they happen,
    woken by the store's change signal (and every half second while a followed job runs: swift writes its log
    without telling the store); a comment when nothing was sent for a while, so the page knows it is live."""
    yield message("hello", {"now": time.time()})
    sent_at = time.monotonic()
    while True:
        seen = store.changes.seq
        rendered_at = time.monotonic()
        out: list[str] = []
        shared: dict[str, list[Piece]] = {}
        for vid, view in list(views.items()):
            said, gone = await view.step(store, shared)
            out += said
            if gone:
                del views[vid]
        if out:
            yield "".join(out)
            sent_at = time.monotonic()
        elif time.monotonic() - sent_at >= KEEP_ALIVE_S:
            yield ": keep-alive\n\n"
            sent_at = time.monotonic()
        following = any(v.active for v in views.values())
        await store.changes.wait(seen, timeout=LOG_POLL_S if following else min(SAFETY_POLL_S, KEEP_ALIVE_S))
        if (gap := MIN_GAP_S - (time.monotonic() - rendered_at)) > 0:
            await asyncio.sleep(gap)


async def gzipped(chunks: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """The stream compressed, each message flushed at once: a row's next version differs from the last in a few
    characters, which deflate's window makes nearly free."""
    z = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip wrapper
    async for chunk in chunks:
        yield z.compress(chunk.encode()) + z.flush(zlib.Z_SYNC_FLUSH)
