"""`/train ...`: every command of the grammar; answers go only to the asker, a new job's card to the channel."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from bot.slack import views

if TYPE_CHECKING:
    from bot.slack.app import BotContext

log = logging.getLogger(__name__)

OOPS = "something went wrong on trainbot's side (the details are in the bot's log); please try again"


def register(app: AsyncApp, ctx: BotContext) -> None:
    async def train(ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack()  # Slack gives up after 3 s: the listener returns now, so Bolt sends the ack now
        ctx.after_ack(answer(command))

    async def answer(command: dict[str, Any]) -> None:
        user, channel = command["user_id"], command.get("channel_id")
        try:
            reply = await ctx.run(command.get("text") or "", user, channel)
            text = views.reply_text(reply.text, reply.ok)
            if reply.answer is not None:  # `try`: answered in the job's thread, as it is generated
                text = await ctx.tries.start(reply, user, channel)
            if reply.public:
                text += "\nIts card is in the channel; progress and the end go to the card's thread."
            if reply.file is not None:
                text = await ctx.upload_log(reply, user, channel)
            elif reply.image is not None:
                text = await ctx.upload_image(reply, user, channel)
        except Exception:
            log.exception("/train %r failed", command.get("text"))
            text = views.reply_text(OOPS, ok=False)
        await ctx.answer(command.get("response_url"), text)

    app.command("/train")(train)
