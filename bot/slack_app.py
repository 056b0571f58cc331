"""The Bolt app: what the listeners share (`BotContext`) and `build_app`, which only wires the listeners."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import listeners
from bot.cards import CardSync
from bot.groups import GroupDirectory
from bot.handlers import Caller, Handlers, Reply
from bot.mrkdwn import SLACK
from bot.notifier import Notifier
from runner.runtime import Runtime

log = logging.getLogger(__name__)

# Bolt answers Slack's request once it sees the ack, looking every 10 ms: work waits at least that long, and at
# most ACKS_FIRST_MAX_S for the other requests under way to be acked.
BOLT_ACK_POLL_S = 0.011
ACKS_FIRST_MAX_S = 0.5


@dataclass
class BotContext:
    runtime: Runtime
    handlers: Handlers
    client: AsyncWebClient  # for the listeners' own calls (home tab, log uploads)
    groups: GroupDirectory
    notifier: Notifier
    cards: CardSync
    http: aiohttp.ClientSession  # one session for every response_url answer (Bolt's respond opens one per call)
    _turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    _unacked: int = 0
    _all_acked: asyncio.Event = field(default_factory=asyncio.Event)

    async def count_unacked(self, next_: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
        """Bolt middleware: how many requests are between arrival and their ack being sent."""
        self._unacked += 1
        self._all_acked.clear()
        try:
            return await next_()
        finally:
            self._unacked -= 1
            if self._unacked == 0:
                self._all_acked.set()

    @asynccontextmanager
    async def after_ack(self) -> AsyncIterator[None]:
        """The work that follows an ack: once the requests under way are acked, one piece at a time, so that a
        burst of commands is acked first (Slack's deadline is 3 s for the ack; an answer may come later)."""
        await asyncio.sleep(BOLT_ACK_POLL_S)
        async with self._turn:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_acked.wait(), ACKS_FIRST_MAX_S)
            yield

    async def answer(self, response_url: str | None, text: str) -> None:
        """An ephemeral answer to the asker, through the request's response_url."""
        if not response_url:
            return
        webhook = AsyncWebhookClient(response_url, session=self.http)
        await webhook.send(text=text, response_type="ephemeral", replace_original=False)

    async def caller(self, user_id: str, channel_id: str | None) -> Caller:
        groups = await self.groups.groups_of(user_id) if self.runtime.config.access.groups else ()
        return Caller(user_id=user_id, channel_id=channel_id, groups=groups)

    async def run(self, text: str, user_id: str, channel_id: str | None) -> Reply:
        """A `/train` command (or a button standing for one), as `user_id` typed it in `channel_id`."""
        reply = await self.handlers.handle(text, await self.caller(user_id, channel_id))
        self.notifier.wake()  # a new job's card, a stop's notice: out now rather than at the next poll
        self.cards.wake()
        return reply

    async def upload_log(self, reply: Reply, user_id: str, channel_id: str | None) -> str:
        """The whole log as a file. Files can't be ephemeral: it goes to the job's thread (or, for a job without
        a card, to the channel where it was asked for). Returns what to tell the asker."""
        assert reply.file is not None
        job = await self.runtime.store.get(reply.job_id) if reply.job_id else None
        channel = job.channel_id if job and job.card_ts and job.channel_id else channel_id
        thread = job.card_ts if job and job.card_ts and job.channel_id else None
        if channel is None:
            return "⚠️ there is no channel to upload the log to"
        path = Path(reply.file)
        try:
            await self.client.files_upload_v2(
                channel=channel, thread_ts=thread, file=str(path), filename=path.name, title=path.name,
                initial_comment=f"The whole log of job {SLACK.code(reply.job_id)}, for <@{user_id}>.")
        except Exception as exc:
            log.warning("uploading %s failed: %s", path, exc)
            return f"⚠️ could not upload the log {SLACK.code(path)}: {SLACK.text(exc)}"
        where = "its thread" if thread else "this channel"
        return f"📎 The whole log of job {SLACK.code(reply.job_id)} ({path.stat().st_size:,} bytes) is in {where}."


def build_app(ctx: BotContext, *, signing_secret: str | None) -> AsyncApp:
    """No signing secret: Socket Mode only (its requests come over the app's own websocket, unsigned)."""
    app = AsyncApp(client=ctx.client, signing_secret=signing_secret or "", logger=logging.getLogger("bot.bolt"),
                   request_verification_enabled=bool(signing_secret))
    app.middleware(ctx.count_unacked)
    listeners.register(app, ctx)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("Slack request failed (%s): %s", body.get("type") or body.get("command"), error, exc_info=error)

    return app
