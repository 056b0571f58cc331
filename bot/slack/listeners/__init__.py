"""Thin adapters from Slack to the handlers: ack first, then do the work, then answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners import actions, commands, events

if TYPE_CHECKING:
    from bot.slack.app import BotContext


def register(app: AsyncApp, ctx: BotContext) -> None:
    commands.register(app, ctx)
    actions.register(app, ctx)
    events.register(app, ctx)
