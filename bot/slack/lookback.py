"""Looking in Slack before sending again: a notice that may have reached Slack already (the bot died after posting
it, or Slack failed in a way that may have done it anyway) is first looked for by the notice ids every message
carries in its metadata, in the channel (a card) or in the job's thread (a reply, and the loss curve)."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import views
from bot.slack.pacing import Pacer
from bot.slack.retry import FailureKind, classify
from storage.notices import Notice

log = logging.getLogger(__name__)

HISTORY_MARGIN_S = 300.0  # look this far before a card's notice for the card (clocks differ)
MAX_PAGES = 10


class Lookback:
    def __init__(self, client: AsyncWebClient, pacer: Pacer) -> None:
        self.client, self.pacer = client, pacer

    async def find_card(self, channel: str, notice: Notice) -> str | None:
        """The card that tells this notice, if it is in the channel already (its ts)."""
        oldest = f"{notice.created_at - HISTORY_MARGIN_S:.6f}"
        async for message in self._pages("conversations.history", channel=channel, oldest=oldest):
            if notice.id in views.told_notices(message, notice.job_id):
                return str(message["ts"])
        return None

    async def _pages(self, method: str, **args: Any) -> AsyncIterator[dict[str, Any]]:
        """The messages of conversations.history / .replies, page by page (with their metadata). Where Slack
        won't show them (no `channels:history` scope, say) there is nothing to find: better a rare duplicate
        than a notice stuck for good."""
        cursor = ""
        for _ in range(MAX_PAGES):
            page = {**args, "include_all_metadata": True, "limit": 200, **({"cursor": cursor} if cursor else {})}
            try:
                resp = await self.pacer.call(
                    method, functools.partial(self.client.api_call, method, http_verb="GET", params=page)
                )
            except SlackApiError as exc:
                failure = classify(exc)
                if failure.kind is not FailureKind.REJECTED and failure.error != "missing_scope":
                    raise
                log.warning("cannot look for earlier messages (%s %s): sending without looking", method, failure.error)
                return
            for message in resp.get("messages") or []:
                yield message
            if not (cursor := (resp.get("response_metadata") or {}).get("next_cursor") or ""):
                return

    async def find_in_thread(self, channel: str, thread: str, notice: Notice) -> tuple[list[int], bool]:
        """(the notices told by the reply that tells this one, or []; whether its loss curve is there)."""
        told: list[int] = []
        charted = False
        chart = views.chart_filename(notice)
        async for message in self._pages("conversations.replies", channel=channel, ts=thread):
            if notice.id in (ids := views.told_notices(message, notice.job_id)):
                told = ids
            charted = charted or any(f.get("name") == chart for f in message.get("files") or [])
        return told, charted
