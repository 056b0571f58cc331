"""`/train llm ... --hold` creates a job without starting it; `start <id>` starts it (the seed's create, then start)."""

from __future__ import annotations

from pathlib import Path

from bot.handlers import Handlers
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
