"""The FastAPI app: builds and mounts the routers, nothing else (`bot/api/server.py` serves it)."""

from __future__ import annotations

from fastapi import FastAPI

from bot.api import chat, errors, gpus, jobs, streams
from bot.api.context import ApiContext
from bot.web import routes as web


def build_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(title="trainbot", summary="The Swift Trainer API: ms-swift fine-tuning jobs (also on Slack)",
                  version="1")
    app.state.ctx = ctx
    app.include_router(jobs.router)
    app.include_router(streams.router)
    app.include_router(gpus.router)
    app.include_router(chat.router)
    web.install(app, ctx)  # the dashboard's pages and static files, at /
    errors.install(app)
    app.add_middleware(errors.BodyLimit, limit=ctx.config.http.max_body_bytes)
    return app
