"""The notifier: delivers the outbox to Slack, at least once, in order per job, and each notice's effect once.

- It reads the outbox as the reader `slack` (storage/outbox.py), from its own place: a console or any other front end
  on the same database reads every notice too, and a restarted bot resumes where it was. While it is down, notices
  wait for it `[slack] keep_notices_hours`; after that they stop waiting (and it comes back as a new reader).
- `job_created` posts the job card in the channel the job was asked from (`Job.slack_channel`); where the card is
  (storage/slack_cards.py: Slack's own table, not the job's) is saved before the notice is marked delivered, and
  its ts is the job's thread.
  Every other notice is a reply in that thread; ends and exports are broadcast to the channel too
  (`reply_broadcast`), and an end brings the loss curve (a PNG uploaded to the thread).
- One delivery at a time per channel (Slack allows about one message a second there), channels in parallel,
  cards first, then ends, then the rest, oldest first (a busy channel's cards and ends are not stuck behind
  progress); the store hands out only each job's oldest undelivered notice, so a job's card is
  posted before its thread starts and its end comes last.
- A failed delivery is retried at a time stored with the notice (`mark_failed`), so a restarted bot keeps the
  schedule: after a 429 when Retry-After says (and the Pacer holds the method back meanwhile), after an outage
  (5xx, refused or cut connections) with a backoff shared by all notices, after a rejection a few times only.
- A notice is marked delivered right after Slack took it. If the bot died in between (or Slack failed in a
  way that may have done it anyway), the message might already be there: every message carries its notice id
  in its metadata, and such a suspect notice is first looked for in the thread (or, for a card, the channel).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot import charts
from bot.slack import views
from bot.slack.lookback import Lookback
from bot.slack.pacing import Pacer
from bot.slack.retry import GONE_ERRORS, FailureKind, Outage, RetryPolicy, classify
from bot.slack.views import Role
from bot.words.format import SLACK
from runner.wakeable import WakeableLoop
from storage.jobs import JobStore
from storage.models import Job
from storage.notices import RUN_ENDS, JobDeleted, Notice
from storage.slack_cards import SlackCard

log = logging.getLogger(__name__)

READER = "slack"  # the notifier's name as a reader of the outbox
KEEP_NOTICES_S = 7 * 24 * 3600.0  # how long notices wait for a bot that is down (`[slack] keep_notices_hours`)
ALIVE_EVERY_S = 60.0  # how often the notifier tells the outbox it is alive (far below KEEP_NOTICES_S)
MAX_BATCH = 10  # minor milestones in one reply at most


class Notifier:
    def __init__(
        self,
        store: JobStore,
        client: AsyncWebClient,
        pacer: Pacer,
        *,
        outage: Outage | None = None,
        policy: RetryPolicy | None = None,
        poll_s: float = 0.5,
        safety_poll_s: float = 30.0,
        on_card: Callable[[Job, int | None], None] | None = None,
        keep_s: float = KEEP_NOTICES_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.client, self.pacer = store, client, pacer
        self.lookback = Lookback(client, pacer)
        self._clock = clock  # wall time, like the outbox's next_attempt_at
        self.policy = policy or RetryPolicy()
        self.outage = outage or Outage(self.policy)
        self.poll_s = poll_s
        self.on_card = on_card
        self.keep_s = keep_s
        self._alive_at = 0.0  # monotonic time the outbox was last told this reader is alive
        self._started_at = clock()
        self._busy: set[str] = set()  # channels with a delivery under way
        self._in_flight: set[int] = set()
        self._unsure: set[int] = set()  # may have reached Slack already: look before sending again
        self._verified_jobs: set[str] = set()
        self._channels: dict[str, str | None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.loop = WakeableLoop("notifier", self._step, store.changes, safety_poll_s)
        self._closing = False

    async def start(self) -> None:
        """Join the outbox as its reader `slack` (resuming where the last bot was), then deliver."""
        await self._alive()
        self.loop.start()

    async def _alive(self) -> None:
        await self.store.register_reader(READER, keep_s=self.keep_s)
        self._alive_at = time.monotonic()

    def wake(self) -> None:
        self.loop.wake()

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop taking new notices; let deliveries under way finish (a cut one is checked by the next bot)."""
        self._closing = True
        await self.loop.close()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _step(self) -> float | None:
        """One round of the loop; how long it may sleep: woken by a new notice (a store change) or a delivery
        ending, it need only wake on its own for a retry that falls due (stored), or while Slack is down."""
        if time.monotonic() - self._alive_at >= ALIVE_EVERY_S:
            await self._alive()
        await self.dispatch()
        now = self._clock()
        if self.outage.active(now):
            return self.poll_s
        soonest = await self.store.next_notice_at(READER)
        if soonest is None or self._tasks:
            return None if soonest is None or soonest <= now else soonest - now + 0.01  # a delivery ending wakes us
        return soonest - now + 0.01 if soonest > now else self.poll_s

    async def dispatch(self) -> int:
        """Start delivering what is due: per channel the oldest notice first, one at a time."""
        if self._closing or self.outage.active(self._clock()):
            return 0
        started = 0
        for notice in sorted(await self.store.due_notices(READER, now=self._clock(), limit=500), key=_priority):
            assert notice.id is not None
            channel = await self._channel_of(notice)
            key = channel or f"job:{notice.job_id}"
            if notice.id in self._in_flight or key in self._busy:
                continue
            self._busy.add(key)
            self._in_flight.add(notice.id)
            task = asyncio.create_task(self._deliver_guarded(notice, channel, key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    async def _channel_of(self, notice: Notice) -> str | None:
        """Where the job's notices go: its card's channel, else the channel it was asked from (None: nowhere)."""
        if notice.job_id not in self._channels:
            card = await self.store.slack_card(notice.job_id)
            job = await self.store.get(notice.job_id) if card is None else None
            self._channels[notice.job_id] = card.channel if card else job.slack_channel if job else None
        return self._channels[notice.job_id]

    async def _deliver_guarded(self, notice: Notice, channel: str | None, key: str) -> None:
        assert notice.id is not None
        try:
            pending = await self.store.pending_notices(READER, notice.job_id)
            if not pending or pending[0].id != notice.id or pending[0].next_attempt_at > self._clock():
                return  # read before the delivery under way then had marked it (or put it off): not ours now
            notice = pending[0]  # with its attempts as they are now
            await self.deliver(notice, channel, pending[1:])
            self.outage.succeeded()
            self._unsure.discard(notice.id)
            self._verified_jobs.add(notice.job_id)
        except Exception as exc:
            await self._failed(notice, exc)
        finally:
            self._busy.discard(key)
            self._in_flight.discard(notice.id)
            self.loop.wake()

    async def deliver(self, notice: Notice, channel: str | None, later: list[Notice]) -> None:
        """Deliver a job's oldest undelivered notice (`later`: the job's others, which may share its reply)."""
        assert notice.id is not None
        if channel is None:  # a console or API job without a channel, or one whose row is gone: nowhere to tell
            await self.store.mark_delivered(READER, notice.id)
            return
        card = await self.store.slack_card(notice.job_id)
        if isinstance(notice.facts, JobDeleted):
            if card is not None:
                await self._show_deleted(card, notice.facts)
                await self.store.forget_slack_card(card.job_id)  # first: a retry finds no card, and tells nothing
            await self.store.mark_delivered(READER, notice.id)
            return
        version = await self.store.version(notice.job_id)
        job = await self.store.get(notice.job_id)
        if job is None:
            await self.store.mark_delivered(READER, notice.id)
            return
        suspect = self._suspect(notice)
        if views.role(notice.facts) is Role.CARD:
            ts = await self.lookback.find_card(channel, notice) if suspect else None
            if ts is None:
                ts = await self._post(channel, None, views.job_card(job), [notice])
                if (profile := views.profile_message(notice)) is not None:
                    await self._post(channel, ts, profile, [notice])
            await self.store.save_slack_card(SlackCard(job.id, channel, ts))  # before the mark: never a lost card
            await self.store.mark_delivered(READER, notice.id)
            if self.on_card is not None:
                self.on_card(job, version)
            return
        thread = card.ts if card is not None else None
        told: list[int] = []
        charted = False
        if suspect and thread:
            told, charted = await self.lookback.find_in_thread(channel, thread, notice)
        if notice.id not in told:
            batch = self._batch(notice, later, self._clock())
            await self._post(channel, thread, views.notices_message(batch, job), batch)
            told = [n.id for n in batch if n.id is not None]
            self._unsure.add(notice.id)  # posted: should the chart fail now, its retry must not post again
        if isinstance(notice.facts, RUN_ENDS) and thread and not charted:
            await self._upload_chart(channel, thread, notice, job)
        await self.store.mark_delivered(READER, *sorted(i for i in told if i >= notice.id))

    @staticmethod
    def _batch(notice: Notice, later: list[Notice], now: float) -> list[Notice]:
        """The notice, and the minor milestones of its job queued right after it (one reply for them all)."""
        if views.role(notice.facts) is not Role.MINOR:
            return [notice]
        batch = [notice]
        for next_ in later:
            if views.role(next_.facts) is not Role.MINOR or next_.next_attempt_at > now or len(batch) >= MAX_BATCH:
                break
            batch.append(next_)
        return batch

    def _suspect(self, notice: Notice) -> bool:
        """Might this notice be in Slack already? Only if a try of it may have got there: in this process (see
        _unsure), or in an earlier one, which can only be true of the first notice of a job we see."""
        assert notice.id is not None
        return notice.id in self._unsure or (
            notice.created_at < self._started_at and notice.job_id not in self._verified_jobs
        )

    async def _post(self, channel: str, thread: str | None, msg: views.Message, notices: list[Notice]) -> str:
        args: dict[str, Any] = {
            "channel": channel,
            "text": msg.text,
            "metadata": views.notice_metadata(notices),
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if msg.blocks:
            args["blocks"] = msg.blocks
        if thread:
            args.update(thread_ts=thread, reply_broadcast=msg.broadcast)
        resp = await self.pacer.call("chat.postMessage", lambda: self.client.chat_postMessage(**args), channel=channel)
        return str(resp["ts"])

    async def _upload_chart(self, channel: str, thread: str, notice: Notice, job: Job) -> None:
        run_dir = (notice.facts.run_dir if isinstance(notice.facts, RUN_ENDS) else None) or job.run_dir
        if not run_dir:
            return
        png = await asyncio.to_thread(charts.loss_curve_png, Path(run_dir), f"job {job.id}: loss")
        if png is None:
            return
        await self.pacer.call(
            "files.getUploadURLExternal",
            lambda: self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread,
                content=png,
                filename=views.chart_filename(notice),
                title=f"Loss curve of job {SLACK.text(job.id)}" + (f" “{SLACK.text(job.name)}”" if job.name else ""),
            ),
            also=("files.completeUploadExternal",),
        )

    async def _show_deleted(self, card: SlackCard, deleted: JobDeleted) -> None:
        msg = views.deleted_card(card.job_id, deleted.by, deleted.name)
        try:
            await self.pacer.call(
                "chat.update",
                lambda: self.client.chat_update(channel=card.channel, ts=card.ts, text=msg.text, blocks=msg.blocks),
            )
        except Exception as exc:
            if classify(exc).error not in GONE_ERRORS:
                raise

    async def _failed(self, notice: Notice, exc: Exception) -> None:
        assert notice.id is not None
        failure = classify(exc)
        now = self._clock()
        if failure.maybe_delivered:
            self._unsure.add(notice.id)
        if failure.kind is FailureKind.RATE_LIMITED:
            retry_at = now + (failure.retry_after_s or 1.0)
        elif failure.kind is FailureKind.OUTAGE:
            retry_at = self.outage.failed(now)
        else:
            attempts = notice.attempts + 1
            if attempts >= self.policy.max_rejected_attempts:
                log.error(
                    "dropping notice %s (%s of job %s) after %d tries: %s",
                    notice.id,
                    notice.topic,
                    notice.job_id,
                    attempts,
                    failure.error,
                )
                await self.store.mark_failed(READER, notice.id, retry_at=now, error=failure.error)
                await self.store.mark_delivered(READER, notice.id)
                return
            retry_at = now + self.policy.backoff(attempts)
            if failure.maybe_delivered:
                log.exception("delivering notice %s failed", notice.id, exc_info=exc)
        log.warning(
            "notice %s (%s of job %s) not delivered (%s): next try in %.1f s",
            notice.id,
            notice.topic,
            notice.job_id,
            failure.error,
            retry_at - now,
        )
        await self.store.mark_failed(READER, notice.id, retry_at=retry_at, error=failure.error)


def _priority(notice: Notice) -> tuple[int, int]:
    """Cards first (a job without one has nowhere to be seen), then ends, then progress; oldest first in each."""
    rank = {Role.CARD: 0, Role.END: 1}.get(views.role(notice.facts), 2)
    return rank, notice.id or 0
