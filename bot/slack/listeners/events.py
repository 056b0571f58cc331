"""Events: the App Home tab is drawn afresh each time someone opens it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp

from bot.slack.home import publish_home

if TYPE_CHECKING:
    from bot.slack.app import BotContext


def register(app: AsyncApp, ctx: BotContext) -> None:
    async def home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") == "home":  # acked when this returns: the tab is drawn after
            ctx.after_ack(publish_home(ctx.client, ctx.runtime, event["user"], time.time()))

    app.event("app_home_opened")(home_opened)
