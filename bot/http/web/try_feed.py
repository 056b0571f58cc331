"""The job page's "Try it" box: a question (and the conversation so far) POSTed by bot/http/web/static/try.js,
the answer streamed back as Server-Sent Events as it is generated (runner/trying.py).

Events: `status` (where the try stands, in words), `asking` ({index, side, question}), `token` ({index, side,
text}), `answer` ({index, side, line}: its tokens and timings), `done` (the summary), `error` (a refusal, in words).
Every value is text the page sets with textContent: the model's answer never becomes HTML.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.http.api.chat import ChatMessage
from bot.http.context import ApiContext
from bot.http.web.session import Session
from bot.words import tries
from bot.words.refusals import error_text
from runner.access import Caller
from runner.try_types import (
    MAX_MESSAGES,
    Message,
    TryAnswer,
    TryAsk,
    TryAsking,
    TryDone,
    TryEvent,
    TryLoaded,
    TryLoading,
    TryToken,
    TryWaiting,
)
from storage.errors import JobError

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


class TryBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    csrf: str = Field(max_length=200)
    messages: list[ChatMessage] = Field(max_length=MAX_MESSAGES)  # empty: the recipe's check
    checkpoint: int | None = Field(None, ge=1)


async def answer(
    request: Request, job_id: str, ctx: ApiContext, checked: Callable[[Request, str], Awaitable[Session]]
) -> Response:
    try:
        body = TryBody.model_validate_json(await request.body())
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "body"
        return JSONResponse({"error": f"{where}: {exc.errors()[0]['msg']}"}, status_code=422)
    session = await checked(request, body.csrf)
    caller = Caller(user_id=session.principal.user_id, admin=session.principal.admin)
    ask = TryAsk(job_id, tuple(Message(m.role, m.content) for m in body.messages), body.checkpoint)
    try:
        stream = await ctx.runtime.tries.open(ask, caller)
    except JobError as exc:
        return JSONResponse({"error": error_text(exc)}, status_code=409)
    return StreamingResponse(_events(stream), media_type="text/event-stream", headers=SSE_HEADERS)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _events(stream: AsyncGenerator[TryEvent, None]) -> AsyncIterator[str]:
    try:
        async with contextlib.aclosing(stream):  # a page that leaves frees the session at once
            async for event in stream:
                match event:
                    case TryWaiting():
                        yield _sse("status", tries.waiting_text(event))
                    case TryLoading():
                        yield _sse("status", tries.loading_text(event))
                    case TryLoaded():
                        yield _sse("status", f"answering ({tries.loaded_text(event)})")
                    case TryAsking(index=index, side=side, question=question):
                        yield _sse(
                            "asking", {"index": index, "side": side, "label": tries.SIDE[side], "question": question}
                        )
                    case TryToken(index=index, side=side, text=text):
                        yield _sse("token", {"index": index, "side": side, "text": text})
                    case TryAnswer(index=index, side=side, text=text):
                        yield _sse(
                            "answer", {"index": index, "side": side, "text": text, "line": tries.answer_line(event)}
                        )
                    case TryDone():
                        yield _sse("done", tries.done_text(event))
    except JobError as exc:
        yield _sse("error", error_text(exc))
