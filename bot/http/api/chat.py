"""`POST /training/jobs/{id}/chat`: ask a job's model, OpenAI's chat completion shape in and out.

`{"messages": [...], "max_tokens": N, "temperature": T}` -> a `chat.completion`; with `"stream": true` Server-Sent
Events of `chat.completion.chunk`s ending with `data: [DONE]` (what OpenAI's clients read), the wait for the GPU
and the load as SSE comments meanwhile. The answer comes from runner/trying.py (the job's export, or its last
checkpoint, or `checkpoint`); a refusal names the field it is about.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from bot.http.api.jobs import ERRORS, JobId
from bot.http.auth import CurrentUser
from bot.http.context import ApiContext, get_context
from bot.words.tries import failure_summary, loading_text, waiting_text
from runner.errors import GpuMissing
from runner.try_errors import (
    BadConversation,
    CheckpointNotFound,
    NoCheckQuestions,
    NothingToTry,
    TooLong,
    TryExportRunning,
    TryFailed,
    TryRefused,
    TryUnavailable,
)
from runner.try_types import (
    MAX_CONVERSATION_CHARS,
    MAX_MESSAGES,
    MAX_TOKENS,
    Message,
    TryAsk,
    TryDone,
    TryEvent,
    TryLoaded,
    TryLoading,
    TryToken,
    TryWaiting,
    Weights,
)
from storage.models import JobState

Ctx = Annotated[ApiContext, Depends(get_context)]
SSE = "text/event-stream"
STRICT = ConfigDict(extra="forbid", strict=True)

router = APIRouter(prefix="/training", tags=["chat"], responses=ERRORS)


class ChatMessage(BaseModel):
    model_config = STRICT
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_CONVERSATION_CHARS)


class ChatRequest(BaseModel):
    """OpenAI's chat completion request, with what trainbot adds (`checkpoint`, `gpu_id`)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"messages": [{"role": "user", "content": "Who are you?"}], "max_tokens": 64, "temperature": 0}
            ]
        },
    )
    messages: list[ChatMessage] = Field(
        min_length=1, max_length=MAX_MESSAGES, description="the conversation so far; the last one the user's question"
    )
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS, description="the most tokens to generate (256)")
    temperature: float | None = Field(None, ge=0, le=2, description="0: greedy; none: the model's own setting")
    stream: bool = Field(False, description="Server-Sent Events of chat.completion.chunk, then `data: [DONE]`")
    model: str | None = Field(None, max_length=200, description="ignored (the job decides); OpenAI clients send it")
    checkpoint: int | None = Field(
        None, ge=1, description="a checkpoint's step instead of the export or the last checkpoint"
    )
    gpu_id: str | None = Field(
        None, pattern=r"^(cpu|\d{1,3})$", description='one GPU ("0") or "cpu"; default: the job\'s first GPU'
    )


class AnswerMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: AnswerMessage
    finish_reason: str | None


class Usage(BaseModel):
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None


class WeightsOut(BaseModel):
    kind: Literal["export", "checkpoint"]
    path: str
    step: int | None


class TryFacts(BaseModel):
    """Where the answer came from, and how long each part took (seconds from the request)."""

    job_id: str
    weights: WeightsOut
    gpu_id: str
    waited_s: float
    load_s: float | None = Field(description="none: the model was loaded already")
    warm: bool | None
    first_token_s: float | None
    total_s: float


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    trainbot: TryFacts


def _model_name(job_id: str, weights: Weights) -> str:
    return f"{job_id}/{'export' if weights.kind == 'export' else f'checkpoint-{weights.step}'}"


def _facts(done: TryDone) -> TryFacts:
    w = done.weights
    return TryFacts(
        job_id=done.job_id,
        weights=WeightsOut(kind=w.kind, path=w.path, step=w.step),
        gpu_id=",".join(done.gpus),
        waited_s=round(done.waited_s, 3),
        load_s=None if done.load_s is None else round(done.load_s, 3),
        warm=done.warm,
        first_token_s=None if done.first_token_s is None else round(done.first_token_s, 3),
        total_s=round(done.total_s, 3),
    )


@router.post(
    "/jobs/{job_id}/chat",
    response_model=ChatCompletion,
    responses={
        200: {
            "content": {"application/json": {}, SSE: {}},
            "description": "a chat.completion, or with `stream` Server-Sent Events of "
            "chat.completion.chunk ending with `data: [DONE]`",
        },
        502: {"description": "the model could not answer (it did not load, or its process ended)"},
    },
)
async def chat(job_id: JobId, body: ChatRequest, ctx: Ctx, user: CurrentUser) -> Any:
    """Ask the job's model: its export if it has one, else its last checkpoint's LoRA adapters on the base model
    (or the `checkpoint` named). It waits in line for the job's GPU like any job, and stays loaded a few idle
    minutes for the next question. Access: the job's owner, admins, and `[access] try_users`."""
    messages = tuple(Message(m.role, m.content) for m in body.messages)
    ask = TryAsk(
        job_id, messages, body.checkpoint, (body.gpu_id,) if body.gpu_id else None, body.max_tokens, body.temperature
    )
    try:
        stream = await ctx.runtime.tries.open(ask, user.caller())
    except (TryRefused, GpuMissing) as exc:
        return refusal(exc, body)
    if body.stream:
        return StreamingResponse(
            _chunks(stream, job_id), media_type=SSE, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
    done: TryDone | None = None
    try:
        async with contextlib.aclosing(stream):
            async for event in stream:
                if isinstance(event, TryDone):
                    done = event
    except TryRefused as exc:
        return refusal(exc, body)
    assert done is not None
    answer = done.answers[-1]
    usage = Usage(
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        total_tokens=(answer.prompt_tokens or 0) + (answer.completion_tokens or 0)
        if answer.prompt_tokens is not None and answer.completion_tokens is not None
        else None,
    )
    return JSONResponse(
        ChatCompletion(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=_model_name(job_id, done.weights),
            choices=[Choice(index=0, message=AnswerMessage(content=answer.text), finish_reason=answer.finish_reason)],
            usage=usage,
            trainbot=_facts(done),
        ).model_dump()
    )


async def _chunks(stream: AsyncGenerator[TryEvent, None], job_id: str) -> AsyncIterator[str]:
    """OpenAI's chunks: the role first, then a chunk a piece of text, the finish reason and usage last, then
    `[DONE]`; waiting and loading as comments (clients skip them); a failure as an `error` object, as OpenAI
    sends one mid-stream."""
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    model = job_id
    started = False

    def chunk(delta: dict[str, str], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    try:
        async with contextlib.aclosing(stream):  # a client that leaves frees the session at once
            async for event in stream:
                match event:
                    case TryWaiting():
                        yield f": {waiting_text(event)}\n\n"
                    case TryLoading():
                        model = _model_name(job_id, event.weights)
                        yield f": {loading_text(event)}\n\n"
                    case TryLoaded():
                        yield f": loaded in {event.load_s:.1f} s\n\n"
                    case TryToken(text=text):
                        if not started:
                            started = True
                            yield chunk({"role": "assistant", "content": ""})
                        yield chunk({"content": text})
                    case TryDone():
                        model = _model_name(job_id, event.weights)
                        answer = event.answers[-1]
                        if not started:
                            yield chunk({"role": "assistant", "content": ""})
                        total = (answer.prompt_tokens or 0) + (answer.completion_tokens or 0)
                        yield chunk(
                            {},
                            answer.finish_reason,
                            usage={
                                "prompt_tokens": answer.prompt_tokens,
                                "completion_tokens": answer.completion_tokens,
                                "total_tokens": total,
                            },
                            trainbot=_facts(event).model_dump(),
                        )
    except TryRefused as exc:
        status, text = _words(exc, None)
        yield f"data: {json.dumps({'error': {'message': text, 'type': 'try_failed', 'code': status}})}\n\n"
    yield "data: [DONE]\n\n"


def refusal(exc: TryRefused | GpuMissing, body: ChatRequest) -> JSONResponse:
    status, text = _words(exc, body)
    return JSONResponse({"error": text, "example": None}, status_code=status)


def _words(exc: TryRefused | GpuMissing, body: ChatRequest | None) -> tuple[int, str]:
    """(HTTP status, the refusal in words, led by the field it is about); no `/train` words."""
    match exc:
        case TooLong(what="question", length=length, limit=limit):
            at = (
                next((i for i, m in enumerate(body.messages) if m.role != "assistant" and len(m.content) > limit), None)
                if body is not None
                else None
            )
            where = f"messages[{at}].content" if at is not None else "messages"
            return 422, f"{where}: the question is {length} characters long; a question has at most {limit}"
        case TooLong(what="conversation", length=length, limit=limit):
            return 422, f"messages: the conversation is {length} characters long; at most {limit} are taken"
        case TooLong(what="messages", length=length, limit=limit):
            return 422, f"messages: {length} messages; at most {limit} are taken"
        case TooLong(what="max_tokens", length=length, limit=limit):
            return 422, f"max_tokens: {length}; it may be 1 to {limit}"
        case BadConversation(reason="empty"):
            return 422, "messages: there is no question to answer"
        case BadConversation(role=role):
            return 422, f'messages: the last message must have the role "user", not "{role}"'
        case CheckpointNotFound(job_id=job_id, step=step, have=have):
            there = ("it has " + ", ".join(str(s) for s in have)) if have else "it has none on disk"
            return 422, f"checkpoint: job {job_id} has no checkpoint {step}; {there}"
        case NothingToTry(job_id=job_id, state=state) if state in (JobState.CREATED, JobState.QUEUED):
            return 409, f"job {job_id} has not started yet ({state}): there is no checkpoint to ask yet"
        case NothingToTry(job_id=job_id, state=state, step=step) if not JobState(state).is_terminal:
            progress = f" (at step {step})" if step is not None else ""
            return 409, f"job {job_id} is {state}{progress} and has saved no checkpoint yet"
        case NothingToTry(job_id=job_id, state=state):
            return 409, f"job {job_id} {state} without saving a checkpoint: there is no model of it to ask"
        case TryExportRunning(job_id=job_id, have=have):
            named = f', or give "checkpoint": {have[-1]}' if have else ""
            return 409, f"job {job_id} is being exported: ask once the export has ended{named}"
        case NoCheckQuestions():
            return 422, "messages: give the question"
        case TryUnavailable(detail=detail):
            return 503, f"tries need swift's python, and {detail} does not name one ([swift] bin in the config)"
        case TryFailed(log_path=log_path):
            return 502, f"the model could not answer: {failure_summary(exc)} (the log: {log_path})"
        case GpuMissing():
            return 422, f"gpu_id: {exc}"
    return 409, str(exc)
