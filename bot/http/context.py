"""What every route needs: the one runtime of the process, the shared handlers, the config and the API tokens."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from bot.chat.handlers import Handlers
from runner.config import Config
from runner.runtime import Runtime


@dataclass(frozen=True)
class ApiContext:
    runtime: Runtime
    handlers: Handlers
    config: Config
    tokens: dict[str, str] = field(repr=False)  # token -> user id; never logged (repr=False keeps it out of logs)


async def get_context(request: Request) -> ApiContext:
    """async only so that FastAPI calls it in the loop (a plain `def` dependency goes through its thread pool)."""
    ctx: ApiContext = request.app.state.ctx
    return ctx
