"""A try of a job's model in Slack: the answer goes to the job's thread, one message updated in place as it is
generated, and a reply in that thread (mentioning the bot, or starting with `try`) goes on with the conversation.

The model's text is untrusted: the message (bot/slack/try_view.py) shows it only in `plain_text` objects, cut at a
limit with the whole answer as a file in the thread. A thread's conversation is kept in the store
(storage/slack_tries.py): a restarted bot goes on with it. Updates go through the bot's one Pacer (bot/slack/pacing.py):
chat.update is Tier 3 (50 a minute for the whole app), so while tokens come a message is updated at most every
UPDATE_EVERY_S and only with a token the card updates can spare (not urgent); the last update waits its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast, get_args

from slack_sdk.web.async_client import AsyncWebClient

from bot.chat.handlers import Reply
from bot.slack.pacing import Pacer
from bot.slack.try_view import AnswerView, apply, blocks, plain_ref, whole_answer
from bot.words import refusals, texts
from bot.words.format import SLACK
from runner.access import Caller
from runner.runtime import Runtime
from runner.try_types import (
    Message,
    Role,
    TryAsk,
    TryDone,
    TryEvent,
)
from storage.errors import JobError
from storage.slack_tries import SlackTryThread

log = logging.getLogger(__name__)

UPDATE_EVERY_S = 1.5
EVENT_TYPE = "trainbot_try"
MENTION = re.compile(r"<@[A-Z0-9]+(\|[^>]*)?>")
TRY_WORD = re.compile(r"\s*try(\s|$)", re.IGNORECASE)


@dataclass
class Conversation:
    """A job's model talked to in one thread: what was said, oldest first."""

    job_id: str
    channel: str
    thread_ts: str
    messages: list[Message] = field(default_factory=list)
    name: str = ""  # the job's, shown beside its id


class SlackTries:
    def __init__(
        self,
        runtime: Runtime,
        client: AsyncWebClient,
        pacer: Pacer,
        caller: Callable[[str, str | None], Awaitable[Caller]],
    ) -> None:
        self.runtime, self.client, self.pacer, self.caller = runtime, client, pacer, caller
        self._threads: dict[tuple[str, str], Conversation] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def start(self, reply: Reply, user: str, channel: str | None) -> str:
        """`/train try`: the answer goes to the job's thread (or, for a job without a card, to a new thread in
        this channel); returns what to tell the asker."""
        assert reply.try_ask is not None and reply.answer is not None
        ask = reply.try_ask
        card = await self.runtime.store.slack_card(ask.job_id)
        job = await self.runtime.store.get(ask.job_id)
        name = job.name if job is not None else ""
        ref = texts.job_ref(ask.job_id, name, SLACK)
        if card is not None:
            where, thread = card.channel, card.ts
        elif channel is not None:
            where = channel
            posted = await self._post(
                channel,
                None,
                f"Trying job {ref}'s model",
                [
                    {
                        "type": "section",
                        "text": {
                            "type": "mrkdwn",
                            "text": f"🤖 A try of job {ref}'s model: replies in this "
                            "thread (mentioning me, or starting with `try`) go on with it.",
                        },
                    }
                ],
                ask.job_id,
            )
            thread = posted
        else:
            return "⚠️ there is no channel to answer in"
        conversation = Conversation(ask.job_id, where, thread, name=name)
        self._threads[(where, thread)] = conversation
        self._spawn(self._answer(conversation, ask, reply.answer, user))
        return f"🤖 Asking job {ref}'s model: the answer comes in the job's thread."

    async def thread_reply(self, event: dict[str, Any], bot_user_id: str | None, *, mentioned: bool) -> None:
        """A message in a thread: one that mentions the bot (`mentioned`, from app_mention) or starts with `try`
        goes on with the conversation of the job the thread belongs to."""
        channel, thread, user = event.get("channel"), event.get("thread_ts"), event.get("user")
        text = str(event.get("text") or "")
        if not channel or not thread or not user or event.get("bot_id") or event.get("subtype"):
            return
        if not mentioned and (not TRY_WORD.match(text) or (bot_user_id and f"<@{bot_user_id}" in text)):
            return  # a mention comes as app_mention too: answered once, there
        question = MENTION.sub("", text).strip()
        if TRY_WORD.match(question):
            question = question.lstrip()[3:].strip()
        question = _unescape(question)
        conversation = self._threads.get((channel, thread)) or await self._thread_of(channel, thread)
        if conversation is None:
            return  # not a job's thread, nor one a try started: not ours to answer
        history = conversation.messages if question else []
        ask = TryAsk(conversation.job_id, (*history, Message("user", question)) if question else ())
        try:
            stream = await self.runtime.tries.open(ask, await self.caller(user, channel))
        except JobError as exc:
            await self._tell(channel, thread, user, f"⚠️ {refusals.error_text(exc, SLACK)}")
            return
        self._spawn(self._answer(conversation, ask, stream, user))

    async def _thread_of(self, channel: str, thread: str) -> Conversation | None:
        """The conversation of a thread this bot has not talked in since it started: the one kept in the store (a
        bot before this one talked there), else its card's job's, afresh."""
        store = self.runtime.store
        kept = await store.slack_try_thread(channel, thread)
        card = await store.slack_card_at(channel, thread) if kept is None else None
        job_id = kept.job_id if kept is not None else card.job_id if card is not None else None
        job = await store.get(job_id) if job_id is not None else None
        if job is None:
            return None  # not a job's thread nor a try's, or its job was deleted
        said = [Message(cast(Role, r), c) for r, c in kept.messages if r in get_args(Role)] if kept is not None else []
        conversation = Conversation(job.id, channel, thread, said, name=job.name)
        self._threads[(channel, thread)] = conversation
        return conversation

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("a try in Slack failed")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, conversation: Conversation, ask: TryAsk, stream: AsyncGenerator[TryEvent, None], user: str
    ) -> None:
        """Post the answer's message in the thread and keep it up to date until the answer is whole."""
        question = ask.messages[-1].content if ask.messages else None
        turn = sum(m.role == "user" for m in ask.messages)
        view = AnswerView(conversation.job_id, user, question, turn=turn, name=conversation.name)
        channel, thread = conversation.channel, conversation.thread_ts
        ts = await self._post(channel, thread, self._text(view), blocks(view), conversation.job_id)
        shown_at = time.monotonic()
        done: TryDone | None = None
        try:
            async with contextlib.aclosing(stream):
                async for event in stream:
                    changed = apply(view, event)
                    if isinstance(event, TryDone):
                        done = event
                    if (
                        changed
                        and time.monotonic() - shown_at >= UPDATE_EVERY_S
                        and self.pacer.try_take("chat.update", urgent=False)
                    ):
                        shown_at = time.monotonic()
                        await self._update(channel, ts, view, taken=True)
        except JobError as exc:
            view.status = "⚠️ no answer"
            view.footer = f"⚠️ {refusals.error_text(exc, SLACK)}"
        await self._update(channel, ts, view)
        if view.cut():
            await self._upload(channel, thread, view)
        if done is not None and question is not None:
            conversation.messages[:] = [*ask.messages, Message("assistant", done.answers[-1].text)]
        if done is not None:  # kept, so a restarted bot goes on with this thread's conversation
            said = tuple((m.role, m.content) for m in conversation.messages)
            where = SlackTryThread(channel, thread, conversation.job_id, said)
            await self.runtime.store.save_slack_try_thread(where)

    def _text(self, view: AnswerView) -> str:
        return f"Job {plain_ref(view.job_id, view.name)}'s model answers"  # a notification: plain text

    async def _post(self, channel: str, thread: str | None, text: str, shown: list[dict[str, Any]], job_id: str) -> str:
        args: dict[str, Any] = {
            "channel": channel,
            "text": text,
            "blocks": shown,
            "unfurl_links": False,
            "unfurl_media": False,
            "metadata": {"event_type": EVENT_TYPE, "event_payload": {"job_id": job_id}},
        }
        if thread:
            args["thread_ts"] = thread
        resp = await self.pacer.call("chat.postMessage", lambda: self.client.chat_postMessage(**args), channel=channel)
        return str(resp["ts"])

    async def _update(self, channel: str, ts: str, view: AnswerView, *, taken: bool = False) -> None:
        try:
            await self.pacer.call(
                "chat.update",
                lambda: self.client.chat_update(channel=channel, ts=ts, text=self._text(view), blocks=blocks(view)),
                taken=taken,
            )
        except Exception as exc:  # a lost update: the next (or the last) one shows it all
            log.warning("updating the answer of job %s failed: %s", view.job_id, exc)

    async def _upload(self, channel: str, thread: str, view: AnswerView) -> None:
        name = f"answer-{view.job_id}-{int(time.time())}.txt"
        with contextlib.suppress(Exception):
            await self.pacer.call(
                "files.getUploadURLExternal",
                lambda: self.client.files_upload_v2(
                    channel=channel,
                    thread_ts=thread,
                    content=whole_answer(view),
                    filename=name,
                    title=f"The whole answer of job {plain_ref(view.job_id, view.name)}",
                ),
                also=("files.completeUploadExternal",),
            )

    async def _tell(self, channel: str, thread: str, user: str, text: str) -> None:
        with contextlib.suppress(Exception):
            await self.pacer.call(
                "chat.postEphemeral",
                lambda: self.client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread, text=text),
            )


def _unescape(text: str) -> str:
    """Slack sends `&`, `<` and `>` of typed text escaped: the model reads what was typed."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
