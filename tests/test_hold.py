"""`/train llm ... --hold` creates a job without starting it; `start <id>` starts it (the seed's create, then start)."""

from __future__ import annotations

from pathlib import Path

from bot.chat.handlers import Handlers
from runner.access import Caller
from storage.models import JobState
from tests.conftest import OpenRuntime
from tests.slack_env import fake_config
from tests.waiting import wait_until


async def test_hold_creates_only_and_start_starts(tmp_path: Path, open_runtime: OpenRuntime) -> None:
    runtime = await open_runtime(fake_config(tmp_path, steps=4, step_s=0.05))
    handlers = Handlers(runtime)
    alice, bob = Caller(user_id="UALICE"), Caller(user_id="UBOB")
    reply = await handlers.handle("llm gpu=0 out=output/h --hold", alice)
    assert reply.ok and reply.job_id and "created, not started" in reply.text and f"start {reply.job_id}" in reply.text
    job_id = reply.job_id
    await runtime.supervisor.tick()
    assert (await runtime.store.require(job_id)).state is JobState.CREATED  # the queue leaves it alone
    assert "created" in (await handlers.handle(f"status {job_id}", alice)).text
    refused = await handlers.handle(f"start {job_id}", bob)
    assert not refused.ok and "or an admin may start it" in refused.text
    stop = await handlers.handle(f"stop {job_id}", alice)
    assert not stop.ok and "never started" in stop.text
    started = await handlers.handle(f"start {job_id}", alice)
    assert started.ok and "again" not in started.text

    async def succeeded() -> bool:
        return (await runtime.store.require(job_id)).state is JobState.SUCCEEDED

    await wait_until(succeeded, 30, "the held job to run to the end once started")
    kinds = [e.kind for e in await runtime.store.events(job_id)]
    assert kinds[:2] == ["created", "submitted"] and "finished" in kinds
    deleted = await handlers.handle(f"delete {job_id}", alice)
    assert deleted.ok


async def test_a_dry_run_warns_of_missing_and_busy_gpus_and_says_what_would_work(
    tmp_path: Path, open_runtime: OpenRuntime
) -> None:
    runtime = await open_runtime(fake_config(tmp_path, gpus=2, steps=200, step_s=0.1))
    handlers = Handlers(runtime)
    alice = Caller(user_id="UALICE")
    missing = await handlers.handle("llm gpu=5 out=output/d --dry-run", alice)
    assert missing.ok and "Dry run" in missing.text and "⚠️" in missing.text and missing.text.endswith("Try gpu=0.")
    running = await handlers.handle("llm gpu=0 out=output/r", alice)
    assert running.ok and running.job_id
    busy = await handlers.handle("llm gpu=0,1 out=output/d --dry-run", alice)
    assert f"⚠️ GPU 0 is held by job {running.job_id}: the job would wait in the queue" in busy.text, busy.text
    free = await handlers.handle("llm gpu=1 out=output/d --dry-run", alice)
    assert "⚠️" not in free.text, free.text
    assert (await handlers.handle(f"stop {running.job_id}", alice)).ok

    async def stopped() -> bool:  # its trainer would outlive the runtime
        return (await runtime.store.require(running.job_id or "")).state is JobState.STOPPED

    await wait_until(stopped, 30, "the job to stop")
