"""How the runner's typed errors read over HTTP: one body shape (`error`, and `example` for bad input).

404 an unknown job, 409 what the job's state does not allow, 422 bad input (with a body that would work), 413 a
body over `[http] max_body_bytes`; 401 comes from auth, 403 from the shared access rules (runner/access.py).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.api.create import InvalidRequest, example_body
from bot.texts import error_text
from runner.errors import NotAllowed
from storage.errors import JobError, JobNotFound
from storage.models import Kind

log = logging.getLogger(__name__)


def _body(status: int, error: str, example: dict[str, Any] | None = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "example": example}, status_code=status, headers=headers)


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc[1:]) or str(loc[0]) if loc else "request"


def install(app: FastAPI) -> None:
    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return _body(404, error_text(exc))

    async def forbidden(request: Request, exc: Exception) -> JSONResponse:
        return _body(403, error_text(exc))

    async def conflict(request: Request, exc: Exception) -> JSONResponse:
        return _body(409, error_text(exc))

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InvalidRequest)
        return _body(422, str(exc), exc.example)

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [f"{_where(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in exc.errors()[:5]]
        example = None
        if request.method == "POST" and request.url.path.endswith("/jobs"):
            kind = Kind.LLM if "/llm/" in request.url.path else Kind.VLM
            example = example_body(kind, None, app.state.ctx.config)
        return _body(422, "; ".join(problems) or "the request is not valid", example)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return _body(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    app.add_exception_handler(JobNotFound, not_found)
    app.add_exception_handler(NotAllowed, forbidden)
    app.add_exception_handler(JobError, conflict)  # every other typed refusal is a state conflict
    app.add_exception_handler(InvalidRequest, invalid)
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
        response = _body(413, f"the request body is over {self.limit} bytes (`[http] max_body_bytes`); a job "
                              "request is a few hundred bytes")
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass
