"""Events and logs, once or followed live: Server-Sent Events (`id:` = the store's event id) and a log tail.

A follower sleeps on the store's change signal (storage/changes.py), not on a short timer: it wakes when something
was committed, and ends when the job has ended. A client that reconnects with `Last-Event-ID` (or `?after=`) gets
every event after that id, across restarts of trainbot, since the ids are the store's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse, StreamingResponse

from bot.chat.commands import MAX_LOG_LINES
from bot.http.api.jobs import ERRORS, JobId
from bot.http.api.schemas import EventOut, LogTail, event_out, job_status
from bot.http.auth import CurrentUser
from bot.http.context import ApiContext, get_context
from runner.log_tail import clean_lines, read_log_tail
from storage.jobs import JobStore
from storage.models import Event, ExportState, Job

Ctx = Annotated[ApiContext, Depends(get_context)]
SAFETY_POLL_S = 5.0  # changes made by another process (a restart) are seen within this; also a keep-alive
LOG_POLL_S = 0.5  # swift writes its log without telling the store: a followed log is read this often
PAGE = 500
SSE = "text/event-stream"
_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {SSE: {}, "application/json": {}}, "description": "a JSON list, or an SSE stream with follow=true"}
}

router = APIRouter(tags=["events"], responses=ERRORS)

LastEventId = Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=2**62)]
After = Annotated[int, Query(ge=0, le=2**62, description="only events with a larger id")]
Follow = Annotated[bool, Query(description="keep the response open and send new events as they happen")]


def _ended(job: Job | None) -> bool:
    return job is None or (job.state.is_terminal and job.export_state is not ExportState.EXPORTING)


def sse(event: Event) -> str:
    data = json.dumps(event_out(event).model_dump(), ensure_ascii=False)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"


def sse_status(job: Job) -> str:
    """A job's status (progress, loss, ETA, state) as an SSE message without an id: ids stay the store's events'."""
    return f"event: status\ndata: {job_status(job).model_dump_json()}\n\n"


async def follow_events(store: JobStore, after: int, job_id: str | None) -> AsyncIterator[str]:
    """Every event after `after` (of one job, or all), then new ones as they are committed, each followed by the
    status of the jobs it concerns when that changed (progress is not an event); a job's stream ends when the job
    has ended, the all-jobs stream when the client leaves."""
    yield "retry: 1000\n\n"
    told: dict[str, str] = {}  # job id -> the status last sent
    while True:
        seen = store.changes.seq  # read before the query: a commit in between wakes the wait below at once
        if job_id is not None:
            job = await store.get(job_id)
            jobs = [job] if job is not None else []
            ended = _ended(job)  # before the query: the stream then sends the job's last events too
        else:
            jobs, ended = await store.active(), False
        events = await store.events_after(after, job_id=job_id, limit=PAGE)
        for event in events:
            yield sse(event)
            after = event.id or after
        for job in jobs:
            if told.get(job.id) != (status := sse_status(job)):
                told[job.id] = status
                yield status
        if len(events) == PAGE:
            continue
        if ended:
            return
        if await store.changes.wait(seen, timeout=SAFETY_POLL_S) == seen:
            yield ": keep-alive\n\n"


@router.get("/training/jobs/{job_id}/events", response_model=None, responses=_SSE_DOC)
async def job_events(
    job_id: JobId,
    ctx: Ctx,
    user: CurrentUser,
    follow: Follow = False,
    after: After = 0,
    last_event_id: LastEventId = None,
) -> JSONResponse | StreamingResponse:
    """The job's events (created, started, checkpoint, eval, finished, ...), oldest first; followed, each change
    of its status (progress, loss, ETA) comes too, as an `event: status` message without an id."""
    store = ctx.runtime.store
    await store.require(job_id)
    start = max(after, last_event_id or 0)
    if follow:
        return StreamingResponse(
            follow_events(store, start, job_id),
            media_type=SSE,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    events = [e for e in await store.events(job_id) if (e.id or 0) > start]
    return JSONResponse([event_out(e).model_dump() for e in events])


@router.get("/training/events", response_model=None, responses=_SSE_DOC)
async def all_events(
    ctx: Ctx, user: CurrentUser, follow: Follow = False, after: After = 0, last_event_id: LastEventId = None
) -> JSONResponse | StreamingResponse:
    """Every job's events after `after` (a page of at most 500), or followed live with `follow=true`."""
    store = ctx.runtime.store
    start = max(after, last_event_id or 0)
    if follow:
        return StreamingResponse(
            follow_events(store, start, None),
            media_type=SSE,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    events: list[EventOut] = [event_out(e) for e in await store.events_after(start, limit=PAGE)]
    return JSONResponse([e.model_dump() for e in events])


async def follow_log(store: JobStore, job_id: str, path: Path, offset: int) -> AsyncIterator[bytes]:
    """New lines of the log from `offset` as swift writes them, until the job has ended and all is sent."""
    pending = b""
    while True:
        seen = store.changes.seq
        ended = _ended(await store.get(job_id))
        chunk = read_from(path, offset)
        offset += len(chunk)
        pending += chunk
        lines, _, pending = pending.rpartition(b"\n")
        if lines:
            yield lines + b"\n"
        if ended and not chunk:
            if pending:
                yield pending + b"\n"
            return
        if not chunk:
            await store.changes.wait(seen, timeout=LOG_POLL_S)


@router.get(
    "/training/jobs/{job_id}/logs",
    response_model=None,
    responses={
        200: {
            "model": LogTail,
            "content": {"text/plain": {}},
            "description": "the tail as JSON, or the log as plain text with follow=true",
        }
    },
)
async def job_logs(
    job_id: JobId,
    ctx: Ctx,
    user: CurrentUser,
    lines: Annotated[int, Query(ge=1, le=MAX_LOG_LINES)] = 40,
    follow: Follow = False,
) -> JSONResponse | StreamingResponse:
    """The end of the job's log (`lines`), or with `follow=true` the log from there on as it is written,
    ending when the job ends."""
    store = ctx.runtime.store
    job = await store.require(job_id)
    path = job.train_run.log
    tail = clean_lines(read_log_tail(path)) if path is not None else []
    tail = tail[-lines:]
    if not follow or path is None:
        return JSONResponse(LogTail(job_id=job.id, log_path=job.train_run.log_path, lines=tail).model_dump())
    size = path.stat().st_size if path.exists() else 0
    head = "".join(line + "\n" for line in tail).encode()
    return StreamingResponse(
        _prefixed(head, follow_log(store, job.id, path, size)),
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store"},
    )


def read_from(path: Path, offset: int, most: int = 1 << 20) -> bytes:
    """What the log has past `offset` (a local file read: not worth a thread); b"" if it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(most)
    except OSError:
        return b""


async def _prefixed(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for chunk in rest:
        yield chunk
