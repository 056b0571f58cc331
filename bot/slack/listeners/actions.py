"""The job card's buttons: typed commands (the same as `/train stop <id>` / `/train export <id>`, never re-parsed), the
same access rules."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from bot.chat.commands import JobAction, JobCommand
from bot.slack import views

if TYPE_CHECKING:
    from bot.slack.app import BotContext

log = logging.getLogger(__name__)


def register(app: AsyncApp, ctx: BotContext) -> None:
    async def job_button(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        ctx.after_ack(answer(body, action))

    async def answer(body: dict[str, Any], action: dict[str, Any]) -> None:
        verb: JobAction = "stop" if action["action_id"] == views.STOP_ACTION else "export"
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        try:
            reply = await ctx.run_command(JobCommand(verb, str(action["value"])[:100]), user, channel)
            text = views.reply_text(reply.text, reply.ok)
        except Exception:
            log.exception("%s button on job %s failed", verb, action.get("value"))
            text = views.reply_text("something went wrong on trainbot's side; please try again", ok=False)
        await ctx.answer(body.get("response_url"), text)

    app.action(views.STOP_ACTION)(job_button)
    app.action(views.EXPORT_ACTION)(job_button)
