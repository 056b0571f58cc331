"""The Bolt app: what the listeners share (`BotContext`) and `build_app`, which only wires the listeners."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.chat.commands import Command
from bot.chat.handlers import Handlers, Reply
from bot.slack import listeners
from bot.slack.cards import CardSync
from bot.slack.groups import GroupDirectory
from bot.slack.notifier import Notifier
from bot.slack.try_thread import SlackTries
from bot.words.format import SLACK
from runner.access import Caller
from runner.runtime import Runtime

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 10.0  # at shutdown, how long the commands under way may take to answer
QUIET_AFTER_S = 0.005  # work waits this long past the last answer: a burst's requests come closer than that


@dataclass
class BotContext:
    """What the listeners share. The work that follows an ack runs in its own task (`after_ack`), at most
    `commands_at_once` at a time: the listener returns right after `ack()`, so Bolt sends the ack without waiting
    for the work, and one slow command (an `sbatch`, a rate-limited upload) holds one slot, not the whole bot.
    Acks come first: work is not even started (no task) until no Slack request has been answered for
    `QUIET_AFTER_S` (`answering`), so a burst of commands is acked before any of them is worked on, and each ack
    of the burst pays for nothing but itself."""

    runtime: Runtime
    handlers: Handlers
    client: AsyncWebClient  # for the listeners' own calls (home tab, log uploads)
    groups: GroupDirectory
    notifier: Notifier
    cards: CardSync
    http: aiohttp.ClientSession  # one session for every response_url answer (Bolt's respond opens one per call)
    commands_at_once: int = 4
    _slots: asyncio.Semaphore = field(init=False)
    _work: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _answering: int = field(default=0, init=False)
    _answered: int = field(default=0, init=False)  # how many have been answered: which call_later is the last
    _quiet: asyncio.Event = field(default_factory=asyncio.Event, init=False)  # set: no request answered lately
    _pending: list[Coroutine[Any, Any, None]] = field(default_factory=list, init=False)  # acked, not started
    tries: SlackTries = field(init=False)  # `/train try` and its thread: answers as they are generated

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.commands_at_once)
        self._quiet.set()
        self.tries = SlackTries(self.runtime, self.client, self.notifier.pacer, self.caller)

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Around the answer to one Slack request (a Bolt middleware): work waits until none has been under way
        for `QUIET_AFTER_S`."""
        self._answering += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._answering -= 1
            self._answered += 1
            asyncio.get_running_loop().call_later(QUIET_AFTER_S, self._quiet_since, self._answered)

    def _quiet_since(self, answered: int) -> None:
        if not self._answering and answered == self._answered:  # nothing answered after the one that set this
            self._quiet.set()
            self._start_pending()

    def after_ack(self, work: Coroutine[Any, Any, None]) -> None:
        """Runs `work` (which answers on its own) in its own task once it is quiet and a slot is free; returns at
        once."""
        self._pending.append(work)
        if self._quiet.is_set():  # called outside any request's answer: nothing to let go first
            self._start_pending()

    def _start_pending(self) -> None:
        pending, self._pending = self._pending, []
        for work in pending:
            task = asyncio.create_task(self._in_slot(work))
            self._work.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._work.discard)

    async def _in_slot(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            async with self._slots:
                await self._quiet.wait()  # in the slot: a work that waited for one also lets acks go first
                await work
        finally:
            work.close()  # cancelled while waiting for a slot: it never ran (no "never awaited" warning)

    async def close(self) -> None:
        """Lets the commands under way finish (their answers are due), then closes the answering session."""
        self._quiet.set()
        self._start_pending()
        if self._work:
            _, late = await asyncio.wait(set(self._work), timeout=CLOSE_WAIT_S)
            for task in late:
                task.cancel()
        await self.tries.close()
        await self.http.close()

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
        """A `/train` command as `user_id` typed it in `channel_id`."""
        return await self._after_command(self.handlers.handle(text, await self.caller(user_id, channel_id)))

    async def run_command(self, command: Command, user_id: str, channel_id: str | None) -> Reply:
        """A typed command (a button of a job's card), as `user_id` pressed it in `channel_id`: never re-parsed."""
        return await self._after_command(self.handlers.answer(command, await self.caller(user_id, channel_id)))

    async def _after_command(self, reply: Awaitable[Reply]) -> Reply:
        done = await reply
        self.notifier.wake()  # a new job's card, a stop's notice: out now rather than at the next poll
        self.cards.wake()
        return done

    async def _thread_of(self, job_id: str | None, channel_id: str | None) -> tuple[str | None, str | None]:
        """Where a file about a job goes: its thread (files can't be ephemeral), or, for a job without a card, the
        channel where it was asked for."""
        card = await self.runtime.store.slack_card(job_id) if job_id else None
        if card:
            return card.channel, card.ts
        return channel_id, None

    async def upload_log(self, reply: Reply, user_id: str, channel_id: str | None) -> str:
        """The whole log as a file, in the job's thread. Returns what to tell the asker."""
        assert reply.file is not None
        channel, thread = await self._thread_of(reply.job_id, channel_id)
        if channel is None:
            return "⚠️ there is no channel to upload the log to"
        path = Path(reply.file)
        try:
            await self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread,
                file=str(path),
                filename=path.name,
                title=path.name,
                initial_comment=f"The whole log of job {SLACK.code(reply.job_id)}, for <@{user_id}>.",
            )
        except Exception as exc:
            log.warning("uploading %s failed: %s", path, exc)
            return f"⚠️ could not upload the log {SLACK.code(path)}: {SLACK.text(exc)}"
        where = "its thread" if thread else "this channel"
        return f"📎 The whole log of job {SLACK.code(reply.job_id)} ({path.stat().st_size:,} bytes) is in {where}."

    async def upload_image(self, reply: Reply, user_id: str, channel_id: str | None) -> str:
        """A reply's picture (a comparison's chart) with the reply's text, in the thread of its first job for the
        team to see; the asker is told where (or, should the upload fail, gets the text)."""
        assert reply.image is not None
        channel, thread = await self._thread_of(reply.job_id, channel_id)
        image = reply.image
        if channel is None:
            return f"{reply.text}\n⚠️ there is no channel to post the chart to"
        try:
            await self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread,
                content=image.png,
                filename=image.filename,
                title=image.title,
                initial_comment=f"{reply.text}\n(asked for by <@{user_id}>)",
            )
        except Exception as exc:
            log.warning("uploading %s failed: %s", image.filename, exc)
            return f"{reply.text}\n⚠️ could not post the chart: {SLACK.text(exc)}"
        where = f"job {SLACK.code(reply.job_id)}'s thread" if thread else "this channel"
        return f"📈 {image.title}: the chart and what differs are in {where}."


def build_app(ctx: BotContext, *, signing_secret: str | None) -> AsyncApp:
    """No signing secret: Socket Mode only (its requests come over the app's own websocket, unsigned)."""
    app = AsyncApp(
        client=ctx.client,
        signing_secret=signing_secret or "",
        logger=logging.getLogger("bot.bolt"),
        request_verification_enabled=bool(signing_secret),
        # Bolt answers when the listener returns; its default runs the listener in a task and polls for
        # the ack every 10 ms. Every listener here acks and returns at once (the work goes to
        # `after_ack`), so this saves those ~10 ms on each ack and changes nothing else.
        process_before_response=True,
    )
    listeners.register(app, ctx)

    @app.middleware
    async def acks_first(next_: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
        with ctx.answering():
            return await next_()

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("Slack request failed (%s): %s", body.get("type") or body.get("command"), error, exc_info=error)

    return app
