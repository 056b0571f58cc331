"""The FastAPI app: builds and mounts the routers, nothing else (`bot/http/server.py` serves it)."""

from __future__ import annotations

from fastapi import FastAPI

from bot.http.api import chat, errors, gpus, jobs, streams
from bot.http.context import ApiContext
from bot.http.web import routes as web

DESCRIPTION = """\
**Who you are**: send `Authorization: Bearer <token>` (tokens from `TRAINBOT_API_TOKENS` or `[http] tokens_file`).
Without a token, a request from loopback acts as `http:anonymous` only while no API tokens are configured, or where
`[http] anonymous_loopback_with_tokens = true`; otherwise it gets 401 (behind a reverse proxy on the same host every
request is loopback). `X-Forwarded-For` and `X-Forwarded-Proto` count only from `[http] trusted_proxies`.

**Lists** page newest first (or by `sort`: duration or final loss), `q=` finds jobs by name, folder, owner or id:
pass a page's `next_cursor` as `cursor` for the next. A cursor is a position, not a job: jobs deleted or created
between pages neither end the list nor show twice.
"""


def build_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="trainbot",
        summary="The Swift Trainer API: ms-swift fine-tuning jobs (also on Slack)",
        version="1",
        description=DESCRIPTION,
    )
    app.state.ctx = ctx
    app.include_router(jobs.router)
    app.include_router(streams.router)
    app.include_router(gpus.router)
    app.include_router(chat.router)
    web.install(app, ctx)  # the dashboard's pages and static files, at /
    errors.install(app)
    app.add_middleware(errors.BodyLimit, limit=ctx.config.http.max_body_bytes)
    return app
