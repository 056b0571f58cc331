"""The outbox on a real SQLite file: every reader gets every notice from its own place; what all have is pruned."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from bot.http.web import pages, words
from storage import profile_notes
from storage.jobs import JobStore
from storage.migrations import MIGRATIONS
from storage.models import Job, JobState, Kind
from storage.notices import CheckpointSaved, JobCreated, JobStarted, Notice
from storage.profile_notes import DirectStart, LegacyNote, LigerKernels
from storage.slack_cards import SlackCard
from tests.waiting import wait_until

SLACK, CONSOLE = "slack", "console-1"
DAY = 86400.0


def a_job(output_dir: str = "/o/x") -> Job:
    return Job(id="", kind=Kind.LLM, state=JobState.QUEUED, output_dir=output_dir, gpus=("0",), argv=("swift",))


async def kept(store: JobStore) -> int:
    rows = await store._read("SELECT COUNT(*) FROM outbox")
    return int(rows[0][0])


async def test_two_readers_each_get_every_notice_and_it_is_pruned_once_both_have_it(store: JobStore) -> None:
    await store.register_reader(SLACK, keep_s=DAY)
    await store.register_reader(CONSOLE, keep_s=DAY)
    a = await store.create(a_job(), notice=Notice("", JobCreated()))
    b = await store.create(a_job(), notice=Notice("", JobCreated()))
    await store.update(a.id, notice=Notice(a.id, JobStarted()))
    await store.update(b.id, notice=Notice(b.id, JobStarted()))
    assert [(n.job_id, n.topic) for n in await store.pending_notices(CONSOLE)] == [
        (a.id, "job_created"),
        (b.id, "job_created"),
        (a.id, "job_started"),
        (b.id, "job_started"),
    ]

    shown = await store.pending_notices(CONSOLE)  # the console tells them all, in order
    await store.mark_delivered(CONSOLE, *(n.id for n in shown if n.id is not None))
    assert await store.pending_notices(CONSOLE) == []
    assert await kept(store) == 4  # Slack has had none of them
    assert [n.topic for n in await store.due_notices(SLACK)] == ["job_created", "job_created"]  # Slack: its own

    a_card, b_card = await store.due_notices(SLACK)  # Slack: b's card goes, a's must wait (a 429, say)
    assert a_card.id is not None and b_card.id is not None
    await store.mark_failed(SLACK, a_card.id, retry_at=time.time() + 3600, error="ratelimited")
    await store.mark_delivered(SLACK, b_card.id)
    assert [(n.job_id, n.topic) for n in await store.due_notices(SLACK)] == [(b.id, "job_started")]
    assert await kept(store) == 4  # a's card holds everything after it: Slack's place is before it

    await store.mark_delivered(SLACK, *(n.id for n in await store.pending_notices(SLACK) if n.id is not None))
    assert await kept(store) == 0 and await store.pending_notices(SLACK) == []


async def test_without_a_reader_nothing_is_kept(store: JobStore) -> None:
    for i in range(50):
        job = await store.create(a_job(output_dir=f"/o/{i}"), notice=Notice("", JobCreated()))
        await store.update(job.id, notice=Notice(job.id, CheckpointSaved(step=i)))
    assert await kept(store) == 0


async def test_a_reader_gone_too_long_holds_nothing_back(store: JobStore) -> None:
    await store.register_reader(SLACK, keep_s=DAY)
    await store.register_reader(CONSOLE, keep_s=0.5)  # a console that was killed: it never reads again
    job = await store.create(a_job(), notice=Notice("", JobCreated()))
    for step in range(1, 11):
        await store.update(job.id, notice=Notice(job.id, CheckpointSaved(step=step)))
    await store.mark_delivered(SLACK, *(n.id for n in await store.pending_notices(SLACK) if n.id is not None))
    assert await kept(store) == 11  # the console has had none

    async def pruned() -> bool:
        await store.register_reader(SLACK, keep_s=DAY)  # Slack says it is alive: the outbox looks who is not
        return await kept(store) == 0

    await wait_until(pruned, 10, "the silent console to stop holding notices back")
    assert await store.reader_position(CONSOLE) is None  # forgotten
    await store.update(job.id, notice=Notice(job.id, CheckpointSaved(step=99)))
    [newest] = await store.pending_notices(SLACK)
    assert await store.register_reader(CONSOLE, keep_s=DAY) == newest.id  # back: a new reader, after the newest


async def test_a_reader_that_comes_back_resumes_where_it_was(store: JobStore) -> None:
    at = await store.register_reader(SLACK, keep_s=DAY)
    job = await store.create(a_job(), notice=Notice("", JobCreated()))
    await store.update(job.id, notice=Notice(job.id, JobStarted()))
    [card, _] = await store.pending_notices(SLACK)
    assert card.id is not None
    await store.mark_delivered(SLACK, card.id)
    assert await store.register_reader(SLACK, keep_s=DAY) == card.id > at  # a restarted bot: where it was
    assert [n.topic for n in await store.pending_notices(SLACK)] == ["job_started"]


async def test_an_outbox_from_before_readers_keeps_slacks_place_its_tries_and_its_cards(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the schema and rows a bot of migration 6 left
        for sql in MIGRATIONS[:6]:
            db.executescript(sql)
        db.execute("PRAGMA user_version = 6")
        columns = (
            "id, kind, state, recipe, argv, gpus, output_dir, user_id, channel_id, card_ts, created_at, updated_at"
        )
        db.execute(
            f"INSERT INTO jobs ({columns}) VALUES ('aaaaa', 'llm', 'running', 'llm', '[]', '[]', '/o/a', "
            "'U1', 'C1', '111.1', 1, 1)"
        )
        db.execute(
            f"INSERT INTO jobs ({columns}) VALUES ('ccccc', 'llm', 'queued', 'llm', '[]', '[]', '/o/c', "
            "NULL, NULL, NULL, 1, 1)"
        )
        db.execute("INSERT INTO events (job_id, kind, message, data, at) VALUES ('aaaaa', 'created', 'x', '{}', 1)")
        notes = json.dumps({"v": 1, "command": "swift sft", "profile": "fast", "profile_notes": ["Liger on"]})
        rows = [
            ("aaaaa", "job_created", notes, 1, 1.0),  # delivered
            ("bbbbb", "job_deleted", '{"v": 1, "by": "U1", "card_ts": "222.2", "channel_id": "C1"}', 0, None),
            ("aaaaa", "job_started", '{"v": 1}', 3, None),  # tried three times
            ("ccccc", "job_created", '{"v": 1}', 0, 5.0),
        ]  # delivered out of order
        for job_id, topic, data, attempts, delivered in rows:
            db.execute(
                "INSERT INTO outbox (job_id, topic, data, created_at, attempts, next_attempt_at, "
                "delivered_at) VALUES (?, ?, ?, 1, ?, 1, ?)",
                (job_id, topic, data, attempts, delivered),
            )
    store = await JobStore.open(path)
    try:
        assert await store.reader_position(SLACK) == 1  # before the oldest it had not delivered
        assert [(n.topic, n.attempts) for n in await store.pending_notices(SLACK)] == [
            ("job_deleted", 0),
            ("job_started", 3),
        ]  # the tries carried over, the delivered ones not sent again
        assert await store.slack_cards(["aaaaa", "bbbbb"]) == {
            "aaaaa": SlackCard("aaaaa", "C1", "111.1"),
            "bbbbb": SlackCard("bbbbb", "C1", "222.2"),
        }
        assert (await store.require("aaaaa")).slack_channel == "C1"
        [created] = await store.events("aaaaa")
        assert created.data == {"profile_notes": ["Liger on"]}  # the web page reads them there now
        assert profile_notes.from_event_data(created.data) == [LegacyNote("Liger on")]  # words kept as they were
    finally:
        await store.close()


async def test_the_job_page_reads_what_the_profile_changed_from_the_created_event_as_facts(store: JobStore) -> None:
    notes = (LigerKernels(), DirectStart(ranks=True))
    job = await store.create(a_job(), event_data=profile_notes.event_data(notes))
    facts = await pages.job_facts(store, job)
    assert facts.profile_notes == list(notes)
    html = words.notes_html(facts.profile_notes)
    assert "Liger fused kernels" in html and "one training process per GPU" in html
