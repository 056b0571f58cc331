"""The job store on a real SQLite file: migrations, transitions, events + notices in one transaction."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest

from runner import lifecycle
from runner.lifecycle import apply
from storage import db as dbmod
from storage.actors import User
from storage.errors import StillActive
from storage.events import Created
from storage.jobs import ID_ALPHABET, JobNotFound, JobStore, StaleState
from storage.migrations import MIGRATIONS
from storage.models import Job, JobState, Kind, Progress, Run
from storage.notices import JobCreated, JobStarted, Notice

R = "reader"  # a front end reading the outbox


def new_job(kind: Kind = Kind.LLM, **kw: object) -> Job:
    base: dict[str, object] = dict(
        id="",
        kind=kind,
        state=JobState.QUEUED,
        output_dir="/o/x",
        gpus=("0",),
        argv=("swift", "sft"),
        user_id="U1",
        slack_channel="C1",
    )
    base.update(kw)
    return Job(**base)  # type: ignore[arg-type]


async def test_schema_is_versioned_and_migrations_rerun_safely(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    s = await JobStore.open(path)
    await s.create(new_job())
    await s.close()
    s = await JobStore.open(path)  # second open re-runs migrate(): nothing changes, nothing lost
    assert len(await s.list_jobs()) == 1
    await s.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn = await dbmod.connect(path)
    assert await dbmod.schema_version(conn) == len(MIGRATIONS)
    await conn.close()


async def test_create_gives_short_typeable_id_with_event_and_notice(store: JobStore) -> None:
    await store.register_reader(R, keep_s=60)
    job = await store.create(new_job(), event=Created(by=User("U1")), notice=Notice("", JobCreated()))
    assert len(job.id) == 5 and set(job.id) <= set(ID_ALPHABET)
    got = await store.require(job.id)
    assert got.kind is Kind.LLM and got.gpus == ("0",) and got.argv == ("swift", "sft")
    assert [e.kind for e in await store.events(job.id)] == ["created"]
    assert [n.topic for n in await store.pending_notices(R, job.id)] == ["job_created"]


async def test_a_transition_applies_only_from_its_states_and_writes_nothing_on_refusal(store: JobStore) -> None:
    await store.register_reader(R, keep_s=60)
    job = await store.create(new_job())
    with pytest.raises(StaleState) as refused:
        await apply(store, job.id, lifecycle.succeed(job, Progress(), 0, 1.0))
    assert refused.value.state == "queued" and "running" in refused.value.wanted
    assert (await store.require(job.id)).state is JobState.QUEUED
    assert await store.pending_notices(R, job.id) == []  # the refused change queued nothing
    assert [e.kind for e in await store.events(job.id)] == ["created"]  # and recorded no event
    job = await apply(store, job.id, lifecycle.launch(Run(launch_token="t"), scheduled=False))
    job = await apply(store, job.id, lifecycle.launched(job, Run(pid=123, launch_token="t"), "here"))
    job2 = await apply(store, job.id, lifecycle.running(job, 1.0, "swift sft"))
    assert job2.state is JobState.RUNNING and job2.train_run.pid == 123
    assert [n.topic for n in await store.pending_notices(R, job.id)] == ["job_started"]


async def test_expect_guards_against_races(store: JobStore) -> None:
    job = await store.create(new_job())
    await store.update(job.id, state=JobState.STARTING)
    with pytest.raises(StaleState):
        await store.update(job.id, expect=[JobState.QUEUED], state=JobState.STOPPED)


async def test_progress_round_trips(store: JobStore) -> None:
    job = await store.create(new_job())
    p = Progress(step=5, max_steps=50, loss=6.9, last_checkpoint="/o/x/v0/checkpoint-5")
    await store.update(job.id, progress=p)
    got = await store.require(job.id)
    assert got.progress == p and got.progress.percent == 10.0


async def test_the_two_runs_round_trip_through_the_columns_they_always_had(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = await JobStore.open(path)
    job = await store.create(new_job())
    train = Run(pid=123, proc_start_time=1.5, backend_job_id="77", log_path="/l/train.log")
    export = Run(pid=456, proc_start_time=2.5, backend_job_id="78", log_path="/l/export.log")
    await store.update(job.id, train_run=train)
    got = await store.update(job.id, export_run=export)
    assert (got.run("train"), got.run("export")) == (train, export)
    (listed,) = await store.list_jobs()  # a list page reads rows by position
    assert (listed.train_run, listed.export_run) == (train, export)
    await store.close()
    with sqlite3.connect(path) as raw:  # no migration: each run's fields are the job row's columns of before
        row = raw.execute(
            "SELECT pid, proc_start_time, backend_job_id, log_path, export_pid, export_proc_start_time,"
            " export_backend_job_id, export_log_path FROM jobs"
        ).fetchone()
    assert row == (123, 1.5, "77", "/l/train.log", 456, 2.5, "78", "/l/export.log")


async def test_lists_like_the_seed(store: JobStore) -> None:
    a = await store.create(new_job(Kind.LLM))
    b = await store.create(new_job(Kind.VLM))
    await store.update(a.id, state=JobState.STARTING)
    assert [j.id for j in await store.list_jobs(kind=Kind.LLM)] == [a.id]
    assert [j.id for j in await store.list_jobs(kind=Kind.VLM)] == [b.id]
    assert [j.id for j in await store.list_jobs(states=[JobState.QUEUED])] == [b.id]
    assert {j.id for j in await store.list_jobs()} == {a.id, b.id}


async def test_a_job_changed_by_another_writer_reads_back_changed(tmp_path: Path) -> None:
    """Reads reuse the Job built from an identical row (list pages are fast): a row changed in any way, by this
    store or another process, is built anew; an unchanged one is the same object."""
    store = await JobStore.open(tmp_path / "t.db")
    try:
        job = await store.create(new_job())
        first = await store.require(job.id)
        assert (await store.list_jobs())[0] is first
        with sqlite3.connect(tmp_path / "t.db") as raw:  # another process's write: a field a list page shows
            raw.execute("UPDATE jobs SET output_dir = '/o/moved', step = 7 WHERE id = ?", (job.id,))
        again = await store.require(job.id)
        assert again.output_dir == "/o/moved" and again.progress.step == 7
        assert (await store.list_jobs(kind=Kind.LLM))[0] is again
        await store.update(job.id, expect=[JobState.QUEUED], state=JobState.STARTING)
        assert (await store.require(job.id)).state is JobState.STARTING
    finally:
        await store.close()


async def test_delete_refuses_a_launched_job_and_forgets_the_others(store: JobStore) -> None:
    job = await store.create(new_job())
    await store.update(job.id, state=JobState.STARTING)
    with pytest.raises(StillActive) as refused:
        await store.delete(job.id)
    assert (refused.value.job_id, refused.value.state) == (job.id, "starting")
    await store.update(job.id, state=JobState.STOPPED)
    await store.delete(job.id)
    assert await store.get(job.id) is None
    with pytest.raises(JobNotFound):
        await store.delete(job.id)
    queued = await store.create(new_job())  # a queued job only leaves the line (the caller has left any backend's)
    await store.delete(queued.id)
    assert await store.get(queued.id) is None


async def test_outbox_delivers_in_order_per_job(store: JobStore) -> None:
    await store.register_reader(R, keep_s=60)
    a = await store.create(new_job(), notice=Notice("", JobCreated()))
    await store.update(a.id, notice=Notice(a.id, JobStarted()))
    first = await store.due_notices(R)
    assert [n.topic for n in first] == ["job_created"]
    assert first[0].id is not None
    await store.mark_failed(R, first[0].id, retry_at=1e18, error="503")
    assert await store.due_notices(R) == []  # the head is waiting to retry: the next one must not overtake it
    assert (await store.pending_notices(R))[0].attempts == 1
    await store.mark_delivered(R, first[0].id)
    assert [n.topic for n in await store.due_notices(R)] == ["job_started"]


async def test_fifty_concurrent_creators_and_updaters_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    stores = [await JobStore.open(path) for _ in range(3)]  # several connections, like two bot processes
    await stores[0].register_reader(R, keep_s=60)  # it reads nothing: every notice is kept for the test to look at
    rng = random.Random(7)

    async def life(i: int) -> str:
        s = stores[i % len(stores)]
        job = await s.create(new_job(), notice=Notice("", JobCreated()))
        steps = [
            lambda j: lifecycle.launch(Run(launch_token="t"), scheduled=False),
            lambda j: lifecycle.running(j, 1.0, "swift sft"),
            lambda j: lifecycle.succeed(j, Progress(), 0, 2.0),
        ]
        for step, illegal in zip(steps, (None, lifecycle.requeue, lifecycle.requeue), strict=True):
            await asyncio.sleep(rng.random() / 100)
            job = await apply(s, job.id, step(job))
            if illegal is not None:  # a racing move from a state the job has left is refused, never applied
                with pytest.raises(StaleState):
                    await apply(s, job.id, illegal(job))
        return job.id

    ids = await asyncio.gather(*(life(i) for i in range(50)))
    assert len(set(ids)) == 50
    jobs = await stores[0].list_jobs()
    assert len(jobs) == 50 and all(j.state is JobState.SUCCEEDED for j in jobs)
    for job_id in ids:
        notices = [n.topic for n in await stores[0].notices(job_id)]
        assert notices == ["job_created", "job_started", "job_succeeded"]
        assert [e.kind for e in await stores[0].events(job_id)] == ["created", "started", "finished"]
    for s in stores:
        await s.close()


async def test_a_waiter_wakes_on_a_commit_and_not_before(store: JobStore) -> None:
    seen = store.changes.seq
    assert await store.changes.wait(seen, timeout=0.05) == seen  # nothing committed: the safety timeout ends it
    waiter = asyncio.create_task(store.changes.wait(seen, timeout=30))
    await asyncio.sleep(0)
    assert not waiter.done()
    await store.create(new_job())
    assert await asyncio.wait_for(waiter, 5) > seen
    failed = store.changes.seq
    with pytest.raises(JobNotFound):
        await store.update("nope", state=JobState.STARTING)  # rolled back: nobody is woken for nothing
    assert store.changes.seq == failed


async def test_a_read_never_sees_another_tasks_uncommitted_change(store: JobStore) -> None:
    job = await store.create(new_job())
    with pytest.raises(RuntimeError):
        async with store._tx() as db:  # another task's transaction on the shared connection, rolled back
            await db.execute("UPDATE jobs SET output_dir = '/uncommitted' WHERE id = ?", (job.id,))
            reader = asyncio.create_task(store.get(job.id))
            await db.execute("SELECT 1")  # the reader asks while the transaction is still open
            raise RuntimeError("rolled back")
    got = await reader
    assert got is not None and got.output_dir == "/o/x"


async def test_a_writer_cancelled_at_any_point_leaves_no_transaction_open(store: JobStore) -> None:
    """A task cancelled while its write is under way (a bot closing its tasks) must not leave the shared
    connection inside a transaction: the next write would fail with "cannot start a transaction within a
    transaction" (seen when a bot closed while a Slack try was saving its conversation)."""
    from storage.slack_cards import SlackCard

    for attempt in range(300):
        task = asyncio.create_task(store.save_slack_card(SlackCard(f"j{attempt}", "C1", f"{attempt}.0")))
        for _ in range(attempt % 12):  # cancel it at a different point of its write each time
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.save_slack_card(SlackCard("after", "C1", f"{attempt}.1"))  # raised before the fix
    assert await store.slack_card("after") is not None
