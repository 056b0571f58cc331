"""The notifier on its own: a real store, the stand-in over HTTP, failures injected there (no runner, no trainer)."""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
import pytest

from bot.slack.notifier import KEEP_NOTICES_S, READER, Notifier
from bot.slack.pacing import Pacer
from bot.slack.retry import RetryPolicy
from storage.jobs import JobStore
from storage.models import Job, JobState, Kind
from storage.notices import CheckpointSaved, JobCreated, JobDeleted, JobStarted, JobSucceeded, Notice
from tests.slack_env import BOT, CH, FAST, payload, standin, topics
from tests.slack_standin import SlackStandIn

FIXTURE_LOG = Path(__file__).parent / "fixtures" / "swift46" / "sft_ok.logging.jsonl"


@pytest.fixture(autouse=True)
async def slack_reads(store: JobStore) -> None:
    """Slack reads this outbox already (a bot that starts as a new reader starts after what is in it)."""
    await store.register_reader(READER, keep_s=KEEP_NOTICES_S)


async def keep_everything(store: JobStore) -> None:
    """A reader that reads nothing: notices Slack has had stay in the outbox (for a test to undo its marks)."""
    await store.register_reader("console-idle", keep_s=KEEP_NOTICES_S)


async def card_ts(store: JobStore, job: Job) -> str | None:
    card = await store.slack_card(job.id)
    return card.ts if card else None


def notifier(
    store: JobStore, slack: SlackStandIn, policy: RetryPolicy = FAST, clock: Callable[[], float] = time.time
) -> Notifier:
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(token=BOT, base_url=slack.api_url, retry_handlers=[])
    return Notifier(store, client, Pacer(), policy=policy, poll_s=0.05, clock=clock)


async def new_job(store: JobStore, tmp_path: Path, channel: str = CH, *, ended: bool = True) -> Job:
    job = await store.create(
        Job(
            id="",
            kind=Kind.LLM,
            state=JobState.QUEUED,
            output_dir=str(tmp_path / "out"),
            gpus=("0",),
            argv=("swift", "sft"),
            user_id="U0ALICE",
            slack_channel=channel,
        ),
        notice=Notice("", JobCreated(command="swift sft")),
    )
    run_dir = tmp_path / f"run-{job.id}"
    run_dir.mkdir()
    shutil.copy(FIXTURE_LOG, run_dir / "logging.jsonl")
    for facts in [
        JobStarted(command="swift sft --model m", host="h", gpus=("0",)),
        CheckpointSaved(step=10, path=f"{run_dir}/checkpoint-10"),
        *([JobSucceeded(duration_s=7.0, final_loss=6.88, run_dir=str(run_dir))] if ended else []),
    ]:
        await store.update(job.id, notice=Notice(job.id, facts))
    return job


@asynccontextmanager
async def running(n: Notifier) -> AsyncIterator[Notifier]:
    await n.start()
    try:
        yield n
    finally:
        await n.close()


async def delivered(store: JobStore) -> bool:
    return not await store.pending_notices(READER)


async def test_cards_then_threads_in_order(store: JobStore, slack: SlackStandIn, tmp_path: Path) -> None:
    jobs = [await new_job(store, tmp_path) for _ in range(2)]
    async with running(notifier(store, slack)):
        await slack.wait_for(lambda: delivered(store), 20, what="every notice")
    cards = [m for m in slack.messages(CH, top_level=True) if payload(m)["topic"] == "job_created"]
    assert [payload(c)["job_id"] for c in cards] == [j.id for j in jobs]  # oldest first
    for job, card in zip(jobs, cards, strict=True):
        assert await card_ts(store, job) == card["ts"]
        thread = slack.thread(CH, card["ts"])
        names = topics(slack, card["ts"])
        assert names[:3] == ["job_started", "checkpoint", "job_succeeded"]
        assert names[3] == f"file:loss-{job.id}-{payload(thread[-2])['notice_id']}.png"
        assert thread[-2]["reply_broadcast"] is True and not thread[0].get("reply_broadcast")
    assert slack.rate_limited() == [] and not slack.calls("conversations.replies")


async def test_retry_after_is_honoured(store: JobStore, slack: SlackStandIn, tmp_path: Path) -> None:
    slack.set_rate_limit("chat.postMessage", (1, 2.0))  # a stricter Slack than the bot expects: one per 2 s
    for _ in range(4):
        await store.create(
            Job(
                id="",
                kind=Kind.LLM,
                state=JobState.QUEUED,
                output_dir="o",
                gpus=("0",),
                argv=("swift",),
                slack_channel=CH,
            ),
            notice=Notice("", JobCreated()),
        )
    async with running(notifier(store, slack)):
        await slack.wait_for(lambda: delivered(store), 20, what="every card")
    hits = slack.rate_limited()
    assert hits
    calls = slack.calls("chat.postMessage")
    for hit, i in zip(hits, [i for i, c in enumerate(calls) if c.status == 429], strict=True):
        assert calls[i + 1].time >= calls[i].time + hit.retry_after - 0.05 and calls[i + 1].status == 200
    assert len(slack.messages(CH)) == 4


async def test_outage_backoff_survives_a_restart(store: JobStore, slack: SlackStandIn, tmp_path: Path) -> None:
    job = await new_job(store, tmp_path, ended=False)
    slack.fail_with(503)
    now = [time.time()]  # the bot's clock, moved by hand: after the job's notices were written, as in life
    policy = RetryPolicy(base_s=10.0, cap_s=40.0, jitter=0.0)
    first = notifier(store, slack, policy, clock=lambda: now[0])
    start, retries = now[0], []
    for tries in range(1, 5):
        assert await first.dispatch() == 1
        head = await slack.wait_for(functools.partial(head_after, store, tries), 5, what=f"failed try {tries}")
        assert head is not None
        retries.append(head.next_attempt_at - start)
        now[0] = head.next_attempt_at - 0.1
        assert await first.dispatch() == 0  # Slack is down: nothing tried before the wait is over
        now[0] = head.next_attempt_at
    await first.close()
    assert retries == [10.0, 30.0, 70.0, 110.0]  # waits of 10, 20, 40 s, then the cap
    assert [c.status for c in slack.calls()] == [503] * 4
    slack.clear_faults()
    now[0] -= 1.0
    second = notifier(store, slack, policy, clock=lambda: now[0])  # a restarted bot: the schedule is the store's
    assert await second.dispatch() == 0 and len(slack.calls()) == 4
    now[0] += 1.0
    async with running(second):
        await slack.wait_for(lambda: delivered(store), 10, what="delivery after the outage")
    assert slack.calls("conversations.history")  # the card might have been posted: looked first
    assert [payload(m)["topic"] for m in slack.messages(CH, top_level=True)] == ["job_created"]
    assert await card_ts(store, job) == slack.messages(CH)[0]["ts"]


async def head_after(store: JobStore, tries: int) -> Notice | None:
    """The job's first notice once it has been tried `tries` times (its failure written down)."""
    [head, *_] = await store.due_notices(READER, now=float("inf"))
    return head if head.attempts == tries and head.topic == "job_created" else None


async def test_refused_connections(store: JobStore, slack: SlackStandIn, tmp_path: Path) -> None:
    await new_job(store, tmp_path)
    await slack.refuse_connections(for_seconds=1.0)
    async with running(notifier(store, slack)):

        async def tried() -> bool:
            return any(x.attempts for x in await store.pending_notices(READER))

        await slack.wait_for(tried, 5, what="a refused try")
        await slack.wait_for(lambda: delivered(store), 15, what="delivery after the outage")
    assert topics(slack, slack.messages(CH)[0]["ts"])[:3] == ["job_started", "checkpoint", "job_succeeded"]
    assert len(slack.messages(CH, top_level=True)) == 2


async def test_no_duplicate_after_dying_between_slack_and_the_store(
    store: JobStore, slack: SlackStandIn, tmp_path: Path
) -> None:
    """The state a crash leaves right after Slack took a message and before it was marked delivered."""
    await keep_everything(store)
    job = await new_job(store, tmp_path)
    async with running(notifier(store, slack)):
        await slack.wait_for(lambda: delivered(store), 20, what="every notice")
    before = [dict(m) for m in slack.messages(CH)]
    async with aiosqlite.connect(store_path(tmp_path)) as db:  # undo the mark of the end
        await db.execute(
            "UPDATE outbox_readers SET position = (SELECT id - 1 FROM outbox WHERE topic = "
            "'job_succeeded') WHERE name = 'slack'"
        )
        await db.commit()
    async with running(notifier(store, slack)):
        await slack.wait_for(lambda: delivered(store), 10, what="the end notice marked delivered")
    assert slack.messages(CH) == before and len(slack.uploads(completed=True)) == 1
    assert slack.calls("conversations.replies")
    assert await card_ts(store, job) == before[0]["ts"]


async def test_card_posted_but_not_marked(store: JobStore, slack: SlackStandIn, tmp_path: Path) -> None:
    await keep_everything(store)
    job = await store.create(
        Job(
            id="", kind=Kind.LLM, state=JobState.QUEUED, output_dir="o", gpus=("0",), argv=("swift",), slack_channel=CH
        ),
        notice=Notice("", JobCreated()),
    )
    async with running(notifier(store, slack)):
        await slack.wait_for(lambda: delivered(store), 10, what="the card")
    async with aiosqlite.connect(store_path(tmp_path)) as db:
        await db.execute("UPDATE outbox_readers SET position = 0 WHERE name = 'slack'")
        await db.execute("DELETE FROM slack_cards")
        await db.commit()
    await store.update(job.id, notice=Notice(job.id, JobStarted(command="swift sft", host="h", gpus=("0",))))
    async with running(notifier(store, slack)):
        await slack.wait_for(lambda: delivered(store), 10, what="the card found and the thread")
    [card] = slack.messages(CH, top_level=True)
    assert await card_ts(store, job) == card["ts"]
    assert topics(slack, card["ts"]) == ["job_started"]


async def test_rejected_notice_is_dropped_not_blocking(
    store: JobStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with standin(channels=[CH]) as slack:
        lost = await new_job(store, tmp_path, channel="C0ARCHIVED")
        ok = await new_job(store, tmp_path)
        async with running(notifier(store, slack, RetryPolicy(base_s=0.05, cap_s=0.1, max_rejected_attempts=2))):
            await slack.wait_for(lambda: delivered(store), 20, what="every notice settled")
        assert slack.messages("C0ARCHIVED") == []
        assert [payload(m)["job_id"] for m in slack.messages(CH, top_level=True)] == [ok.id, ok.id]
    assert "dropping notice" in caplog.text and "channel_not_found" in caplog.text
    assert await card_ts(store, lost) is None


async def test_deleted_job_updates_its_card(store: JobStore, slack: SlackStandIn, tmp_path: Path) -> None:
    job = await new_job(store, tmp_path, ended=False)
    async with running(notifier(store, slack)) as n:
        await slack.wait_for(lambda: delivered(store), 10, what="the card")
        ts = await card_ts(store, job)
        await store.update(job.id, state=JobState.STARTING)
        await store.update(job.id, state=JobState.STOPPED)
        await store.delete(job.id, notice=Notice(job.id, JobDeleted(by="U0ALICE")))
        n.wake()
        await slack.wait_for(lambda: slack.updates_of(str(ts)), 10, what="the card update")
        await slack.wait_for(lambda: delivered(store), 10, what="the deletion told")
    assert "deleted by <@U0ALICE>" in (slack.message(CH, str(ts)) or {})["blocks"][0]["text"]["text"]
    assert await card_ts(store, job) is None  # Slack's record of the card goes with it


def store_path(tmp_path: Path) -> Path:
    return tmp_path / "db" / "trainbot.db"


async def test_without_history_scope_a_suspect_notice_is_sent_anyway(
    store: JobStore, slack: SlackStandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await new_job(store, tmp_path, ended=False)
    slack.fail_with(200, body={"ok": False, "error": "missing_scope"}, methods=["conversations.history"])
    async with running(notifier(store, slack)):  # the notices predate it: it would look for them first
        await slack.wait_for(lambda: delivered(store), 10, what="delivery without looking")
    assert [c.response["error"] for c in slack.calls("conversations.history")] == ["missing_scope"]
    assert "cannot look for earlier messages (conversations.history missing_scope)" in caplog.text
    assert len(slack.messages(CH, top_level=True)) == 1
