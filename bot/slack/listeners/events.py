"""Events: the App Home tab is drawn afresh each time someone opens it; a reply in a job's thread that mentions the
bot (or starts with `try`) asks the job's model (bot/slack/try_thread.py)."""

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

    async def mentioned(event: dict[str, Any], context: dict[str, Any]) -> None:
        if event.get("thread_ts"):
            ctx.after_ack(ctx.tries.thread_reply(event, context.get("bot_user_id"), mentioned=True))

    async def message(event: dict[str, Any], context: dict[str, Any]) -> None:
        if event.get("thread_ts") and not event.get("subtype"):
            ctx.after_ack(ctx.tries.thread_reply(event, context.get("bot_user_id"), mentioned=False))

    app.event("app_mention")(mentioned)
    app.event("message")(message)
