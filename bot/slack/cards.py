"""Keeps each job card (one message per job) in step with its job, inside Slack's limits.

A card is updated (chat.update) only when its job changed (`store.version`) since the card was last drawn, at most
once per `interval_s` per job, and within a budget for all cards together (the Pacer's chat.update limit, Slack's
tier 3: `[slack] update_per_min`, all channels together). When more cards want an update than the budget allows,
ended jobs go first (their card loses the Stop button and shows how it ended) and may spend a reserve progress
updates leave them; then the ones drawn longest ago. The reserve is sized to the ends that may come: a few for
ends nobody expects (a failure, a stop), plus one for each job whose ETA says it ends within a window; so 20 busy
jobs' progress gets most of the budget, and 20 jobs ending together are still final within seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import views
from bot.slack.pacing import Pacer
from bot.slack.retry import GONE_ERRORS, FailureKind, Outage, classify
from runner.wakeable import WakeableLoop
from storage.jobs import JobStore
from storage.models import Job, JobState
from storage.slack_cards import SlackCard

log = logging.getLogger(__name__)

RECENT_LIMIT = 100  # ended jobs looked at each round (newest first), besides every active one
REDRAW_AFTER_RESTART_S = 3600.0  # a restarted bot redraws the cards of jobs changed this recently
ENDING_SOON_S = 75.0  # a window and a margin: room kept for an end must be free of progress calls by then
UNEXPECTED_ENDS = 5  # always kept: failures and stops come without an ETA


@dataclass
class _Drawn:
    version: int | None  # None: not known to match (after a bot restart): draw again once
    at: float  # monotonic time of the last draw (or try)
    updated_at: float  # the job's updated_at then: unchanged means unchanged, without asking for the version


class CardSync:
    def __init__(
        self,
        store: JobStore,
        client: AsyncWebClient,
        pacer: Pacer,
        outage: Outage,
        *,
        interval_s: float = 3.0,
        tick_s: float = 0.5,
        safety_poll_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.client, self.pacer, self.outage = store, client, pacer, outage
        self._clock = clock  # wall time, as the outage (shared with the notifier) and jobs' updated_at count it
        self.interval_s, self.tick_s = interval_s, tick_s
        self._drawn: dict[str, _Drawn] = {}
        self.loop = WakeableLoop("cards", self._step, store.changes, safety_poll_s)
        self._held_back = False  # a card changed but must wait (its interval, the budget, an outage)
        self._started_at = clock()

    def start(self) -> None:
        self.loop.start()

    def wake(self) -> None:
        self.loop.wake()

    def posted(self, job: Job, version: int | None) -> None:
        """The notifier has just posted this job's card, drawn at `version`."""
        self._drawn[job.id] = _Drawn(version, time.monotonic(), job.updated_at)

    async def close(self) -> None:
        await self.loop.close()

    async def _step(self) -> float | None:
        """One round; a job's change wakes the loop, so it sleeps long unless a changed card had to wait."""
        self._held_back = False
        await self.sync()
        return self.tick_s if self._held_back else None

    async def sync(self) -> int:
        """Update the cards that are due and fit the budget; returns how many were updated."""
        if self.outage.active(self._clock()):
            self._held_back = True
            return 0
        due = await self._due()
        chosen = []
        for job, card, version in due:  # ended jobs first: their updates may spend the reserve, progress may not
            if not self.pacer.try_take("chat.update", urgent=job.state.is_terminal):
                self._held_back = True
                break
            chosen.append((job, card, version))
        results = await asyncio.gather(*(self._draw(job, card, version) for job, card, version in chosen))
        return sum(results)

    async def _due(self) -> list[tuple[Job, SlackCard, int | None]]:
        jobs = {j.id: j for j in await self.store.list_jobs(limit=RECENT_LIMIT)}
        jobs.update((j.id, j) for j in await self.store.active())
        cards = await self.store.slack_cards(jobs)
        ending = sum(1 for j in jobs.values() if j.state.is_active and _may_end_soon(j))
        self.pacer.keep_for_urgent("chat.update", UNEXPECTED_ENDS + ending)
        now = time.monotonic()
        due: list[tuple[Job, SlackCard, int | None]] = []
        for job in jobs.values():
            drawn = self._drawn.get(job.id)
            if (card := cards.get(job.id)) is None:
                continue
            if drawn is not None and drawn.version is not None and drawn.updated_at == job.updated_at:
                continue
            version = await self.store.version(job.id)
            if drawn is not None and version == drawn.version:
                drawn.updated_at = job.updated_at
                continue
            if drawn is None and job.state.is_terminal and job.updated_at < self._started_at - REDRAW_AFTER_RESTART_S:
                self._drawn[job.id] = _Drawn(version, now, job.updated_at)  # drawn by an earlier bot, long ago
                continue
            if drawn is None or now - drawn.at >= self.interval_s:
                due.append((job, card, version))
            else:
                self._held_back = True
        for gone in set(self._drawn) - set(jobs):
            del self._drawn[gone]
        due.sort(
            key=lambda jcv: (
                not jcv[0].state.is_terminal,
                self._drawn[jcv[0].id].at if jcv[0].id in self._drawn else 0.0,
            )
        )
        return due

    async def _draw(self, job: Job, card: SlackCard, version: int | None) -> bool:
        fresh = await self.store.get(job.id)  # newer than `version` at worst: then drawn again next round
        if fresh is None:
            return False
        msg = views.job_card(fresh)
        channel, ts = card.channel, card.ts
        try:
            await self.pacer.call(
                "chat.update",
                lambda: self.client.chat_update(channel=channel, ts=ts, text=msg.text, blocks=msg.blocks),
                taken=True,
            )
        except Exception as exc:
            failure = classify(exc)
            drawn = self._drawn.setdefault(job.id, _Drawn(None, 0.0, 0.0))
            if failure.kind is FailureKind.OUTAGE:
                self.outage.failed(self._clock())
            elif failure.kind is FailureKind.REJECTED:
                drawn.at = time.monotonic()  # try again after the interval, not at once
                if failure.error in GONE_ERRORS:  # the card was deleted: leave it be until the job changes
                    drawn.version, drawn.updated_at = version, fresh.updated_at
            self._held_back = self._held_back or failure.error not in GONE_ERRORS
            log.warning("job card of %s not updated: %s", job.id, failure.error)
            return False
        self.outage.succeeded()
        self._drawn[job.id] = _Drawn(version, time.monotonic(), fresh.updated_at)
        return True


def _may_end_soon(job: Job) -> bool:
    remaining = job.progress.remaining_s
    return job.state is JobState.STOPPING or (remaining is not None and remaining <= ENDING_SOON_S)
