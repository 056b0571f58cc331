"""How errors read over HTTP: one body shape (ErrorBody: `error` in words, `code`, the `fields` that were wrong,
for bad input an `example` body that would work, and the `endpoint` to call next), words from bot/http/api/refusals.py.

422 bad input (a field named: pydantic's strict types and bounds, or the runner's check), 404 an unknown job, 409
what the job's state does not allow, 413 a body over `[http] max_body_bytes`; 401 comes from auth, 403 from the
shared access rules (runner/access.py).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.http.api.create import endpoint, example_body
from bot.http.api.refusals import Refusal, refusal, shown
from storage.errors import JobError
from storage.models import Kind

log = logging.getLogger(__name__)
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid_request",
}


class CreateRefused(Exception):
    """A create request refused: the typed error, its recipe, and a body that would work."""

    def __init__(self, cause: JobError, kind: Kind, example: dict[str, Any] | None) -> None:
        super().__init__(str(cause))
        self.cause, self.kind, self.example = cause, kind, example


class _AsciiJson(JSONResponse):
    """JSON in ASCII: an error echoes what was sent, and a lone surrogate in it has no UTF-8 (it would be a 500)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _body(
    answer: Refusal, example: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return _AsciiJson(
        {
            "error": answer.error,
            "code": answer.code,
            "fields": list(answer.fields),
            "example": example,
            "endpoint": answer.endpoint,
        },
        status_code=answer.status,
        headers=headers,
    )


def _create_kind(request: Request) -> Kind | None:
    """The recipe, when the request is a create (`POST /training/llm/jobs` or `POST /training/jobs`)."""
    if request.method != "POST":
        return None
    return {"/training/llm/jobs": Kind.LLM, "/training/jobs": Kind.VLM}.get(request.url.path.rstrip("/"))


def validation_refusal(errors: list[Any], kind: Kind | None) -> Refusal:
    """pydantic's findings (strict types, bounds, missing and unknown fields), one item per field as sent."""
    fields: dict[str, dict[str, Any]] = {}
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        name = loc[1] if len(loc) > 1 else (loc[0] if loc else "body")
        limit = next(
            (v for k, v in (e.get("ctx") or {}).items() if k in ("le", "ge", "lt", "gt", "max_length", "min_length")),
            None,
        )
        found = fields.setdefault(
            name,
            {"field": name, "rule": e.get("type", "invalid"), "messages": [], "value": e.get("input"), "limit": limit},
        )
        if e.get("msg") not in found["messages"]:
            found["messages"].append(e.get("msg", "invalid"))
    problems = []
    for name, found in list(fields.items())[:10]:
        got = "" if found["rule"] == "missing" else f" (sent: {shown(_echo(found['value']), 80)})"
        if isinstance(found["value"], bytes):  # a body sent without its JSON content type (no mrkdwn here)
            got = " (sent as bytes: send it with the header Content-Type: application/json)"
        message = f"{name}: {' or '.join(found.pop('messages'))}{got}"
        problems.append(
            found
            | {
                "message": message,
                "limit": found["limit"] if isinstance(found["limit"], int | float) else None,
                "value": _echo(found["value"]),
            }
        )
    return Refusal(
        422,
        "invalid_request",
        "; ".join(p["message"] for p in problems) or "the request is not valid",
        endpoint(kind) if kind is not None else None,
        tuple(problems),
    )


def _echo(value: object) -> object:
    """A sent value fit to send back: a scalar (a finite one: JSON has no NaN), else nothing."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, str | int | float | bool) else None


def install(app: FastAPI) -> None:
    async def typed(request: Request, exc: Exception) -> JSONResponse:
        return _body(refusal(exc, _create_kind(request)))

    async def create_refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CreateRefused)
        return _body(refusal(exc.cause, exc.kind), exc.example)

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        kind = _create_kind(request)
        answer = validation_refusal(list(exc.errors()), kind)
        example = None
        if kind is not None:
            example = example_body(kind, app.state.ctx.config, exc.body, [f["field"] for f in answer.fields])
        return _body(answer, example)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return _body(
            Refusal(exc.status_code, _CODES.get(exc.status_code, "error"), str(exc.detail)),
            headers=dict(exc.headers or {}),
        )

    app.add_exception_handler(JobError, typed)  # each typed refusal: its own status, words
    app.add_exception_handler(CreateRefused, create_refused)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http_error)


class BodyLimit:
    """Refuses a request body over `limit` bytes with 413 before any of it is parsed (chunked bodies too)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _body(
            Refusal(
                413,
                "too_large",
                f"the request body is over {self.limit} bytes ([http] "
                "max_body_bytes); a job request is a few hundred bytes",
            )
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass
