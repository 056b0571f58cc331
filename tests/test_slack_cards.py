"""Job cards kept in step with their jobs: coalesced per job, a budget for all, stalest (and ended) first."""

from __future__ import annotations

import time

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.cards import CardSync
from bot.slack.notifier import READER, Notifier
from bot.slack.pacing import WINDOW_MARGIN_S, Limit, Pacer, slack_limits
from bot.slack.retry import Outage, RetryPolicy
from runner.config import SlackConfig
from storage.actors import User
from storage.jobs import JobStore
from storage.models import Job, JobState, Kind, Progress
from storage.notices import JobCreated, Notice
from storage.waiting import BehindEarlierJob, GpusBusy
from tests.slack_env import BOT, CH, FAST
from tests.slack_standin import SlackStandIn


def client(slack: SlackStandIn) -> AsyncWebClient:
    return AsyncWebClient(token=BOT, base_url=slack.api_url, retry_handlers=[])


async def with_cards(store: JobStore, slack: SlackStandIn, cards: CardSync, n: int) -> list[Job]:
    """n queued jobs whose cards the notifier has posted."""
    notifier = Notifier(store, client(slack), Pacer(), policy=FAST, poll_s=0.05, on_card=cards.posted)
    await notifier.start()
    try:
        for _ in range(n):
            await store.create(
                Job(
                    id="",
                    kind=Kind.LLM,
                    state=JobState.QUEUED,
                    output_dir="o",
                    gpus=("0",),
                    argv=("swift",),
                    user_id="U0ALICE",
                    slack_channel=CH,
                ),
                notice=Notice("", JobCreated()),
            )

        async def posted() -> bool:
            return not await store.pending_notices(READER)

        await slack.wait_for(posted, 10, what="the cards")
    finally:
        await notifier.close()
    cards_of = await store.slack_cards(j.id for j in await store.list_jobs())
    return sorted(await store.list_jobs(), key=lambda j: cards_of[j.id].ts)


async def card_ts(store: JobStore, job: Job) -> str:
    card = await store.slack_card(job.id)
    assert card is not None
    return card.ts


def updated(slack: SlackStandIn) -> list[str]:
    return [str(c.params["ts"]) for c in slack.calls("chat.update") if c.status == 200]


async def test_one_update_per_interval_and_only_on_change(store: JobStore, slack: SlackStandIn) -> None:
    cards = CardSync(store, client(slack), Pacer(), Outage(RetryPolicy()), interval_s=0.5)
    [job] = await with_cards(store, slack, cards, 1)
    assert await cards.sync() == 0  # unchanged since it was posted
    await store.update(job.id, state=JobState.STARTING)
    await store.update(job.id, state=JobState.RUNNING, started_at=time.time())
    assert await cards.sync() == 0  # changed, but drawn less than 0.5 s ago
    await slack.wait_for(cards.sync, 3, what="the first update")
    [post] = slack.calls("chat.postMessage")
    assert slack.calls("chat.update")[0].time - post.time >= 0.5 - 0.01
    for step in range(1, 11):
        await store.update(job.id, progress=Progress(step=step, max_steps=10, loss=1.0 / step))
        assert await cards.sync() == 0  # within the interval: coalesced
    await slack.wait_for(cards.sync, 3, what="the coalesced update")
    assert await cards.sync() == 0
    assert len(updated(slack)) == 2
    assert "step 10/10" in str(slack.message(CH, await card_ts(store, job)))


async def test_budget_goes_to_ended_then_stalest(store: JobStore, slack: SlackStandIn) -> None:
    pacer = Pacer({"chat.update": Limit(3, 3.0), "*": Limit(100, 1.0), "chat.postMessage": Limit(100, 1.0)})
    cards = CardSync(store, client(slack), pacer, Outage(RetryPolicy()), interval_s=0.0)
    jobs = await with_cards(store, slack, cards, 5)
    for job in jobs:
        await store.update(job.id, queue_reason=GpusBusy({}, ("0",)))
    assert await cards.sync() == 3
    assert updated(slack) == [await card_ts(store, j) for j in jobs[:3]]  # drawn longest ago first
    await store.update(jobs[4].id, state=JobState.STOPPED, stopped_by=User("U0ALICE"), finished_at=time.time())
    await slack.wait_for(cards.sync, 3, what="a token for the next update")
    assert updated(slack)[3] == await card_ts(store, jobs[4])  # an ended job's final card goes first
    await slack.wait_for(lambda: cards.sync(), 3, what="the next")
    assert updated(slack)[4] == await card_ts(store, jobs[3])


async def test_a_restarted_bot_redraws_recent_cards_once(store: JobStore, slack: SlackStandIn) -> None:
    first = CardSync(store, client(slack), Pacer(), Outage(RetryPolicy()), interval_s=0.0)
    jobs = await with_cards(store, slack, first, 2)
    assert await first.sync() == 0
    second = CardSync(store, client(slack), Pacer(), Outage(RetryPolicy()), interval_s=0.0)
    assert await second.sync() == 2  # drawn by someone else: drawn again once
    assert await second.sync() == 0
    assert sorted(updated(slack)) == sorted([await card_ts(store, j) for j in jobs])


async def test_outage_pauses_the_cards(store: JobStore, slack: SlackStandIn) -> None:
    now = [1000.0]
    outage = Outage(RetryPolicy(base_s=30.0, cap_s=30.0, jitter=0.0))
    cards = CardSync(store, client(slack), Pacer(), outage, interval_s=0.0, clock=lambda: now[0])
    [job] = await with_cards(store, slack, cards, 1)
    await store.update(job.id, queue_reason=BehindEarlierJob())
    slack.fail_with(502, times=1)
    assert await cards.sync() == 0 and outage.until == 1030.0  # Slack failed: wait base_s from the failure
    now[0] = 1029.9
    assert await cards.sync() == 0 and len(slack.calls("chat.update")) == 1  # no call while Slack is down
    now[0] = 1030.0
    assert await cards.sync() == 1  # the outage is over: the update goes out
    assert [c.status for c in slack.calls("chat.update")] == [502, 200]


def test_pacer_spreads_bursts_and_holds_after_429() -> None:
    now = [100.0]
    pacer = Pacer({"chat.update": Limit(2, 2.0), "chat.postMessage": Limit(1, 1.0)}, clock=lambda: now[0])
    assert [pacer.try_take("chat.update") for _ in range(3)] == [True, True, False]
    now[0] += 0.5
    assert not pacer.try_take("chat.update")
    now[0] += 0.5
    assert pacer.try_take("chat.update")
    assert pacer.try_take("chat.postMessage", "C1") and pacer.try_take("chat.postMessage", "C2")  # per channel
    pacer.hold("chat.postMessage", "C1", 30)
    now[0] += 29.9
    assert not pacer.try_take("chat.postMessage", "C1") and pacer.try_take("chat.postMessage", "C2")
    now[0] += 0.2
    assert pacer.try_take("chat.postMessage", "C1") and not pacer.try_take("chat.postMessage", "C1")


def test_backoff_doubles_to_a_cap() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=60.0, jitter=0.0)
    assert [policy.backoff(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    outage = Outage(policy)
    assert outage.failed(1000.0) == 1001.0
    assert outage.failed(1000.5) == 1001.0  # a second failure in the same wait counts once
    assert outage.failed(1001.0) == 1003.0
    outage.succeeded()
    assert outage.failed(2000.0) == 2001.0


def test_update_budget_is_per_minute_for_all_channels_with_a_reserve_for_ends() -> None:
    now = [100.0]
    pacer = Pacer(slack_limits(SlackConfig(update_per_min=5)), clock=lambda: now[0])  # reserve: 2 of 5
    progress = [pacer.try_take("chat.update", urgent=False) for _ in range(4)]
    assert progress == [True, True, True, False]  # progress leaves the reserve
    assert [pacer.try_take("chat.update") for _ in range(3)] == [True, True, False]  # ends may spend it
    now[0] += 60.0
    assert not pacer.try_take("chat.update")  # 5 in the last minute, as Slack counts them (plus a margin)
    now[0] += WINDOW_MARGIN_S + 0.01
    assert pacer.try_take("chat.update")


def test_the_reserve_shrinks_to_the_ends_that_may_come() -> None:
    """Busy jobs far from their end get the budget the reserve would otherwise hold back (never more)."""
    pacer = Pacer(slack_limits(SlackConfig(update_per_min=10)), clock=lambda: 100.0)  # reserve: 4 of 10
    pacer.keep_for_urgent("chat.update", 1)
    assert [pacer.try_take("chat.update", urgent=False) for _ in range(10)] == [True] * 9 + [False]
    assert pacer.try_take("chat.update")  # the one kept for an end
    big = Pacer(slack_limits(SlackConfig(update_per_min=10)), clock=lambda: 100.0)
    big.keep_for_urgent("chat.update", 50)  # more ends than the reserve: capped at it
    assert sum(big.try_take("chat.update", urgent=False) for _ in range(10)) == 6
