"""Two active jobs never share an output folder: the second is refused, naming the job that has it
(tests/fake_swift.py as swift, the real supervisor, store and local backend)."""

from __future__ import annotations

from pathlib import Path

from bot.chat.handlers import Handlers
from runner.access import Caller
from runner.runtime import Runtime
from storage.models import JobState
from tests.conftest import OpenRuntime
from tests.slack_env import fake_config
from tests.waiting import wait_until

ME = Caller(user_id="U1", channel_id="C1", console=True)


async def _ended(rt: Runtime, job_id: str) -> bool:
    return (await rt.store.require(job_id)).state.is_terminal


async def test_second_job_into_a_busy_folder_is_refused(tmp_path: Path, open_runtime: OpenRuntime) -> None:
    rt = await open_runtime(fake_config(tmp_path, steps=200, step_s=1.0))
    bot = Handlers(rt)
    first = await bot.handle("llm gpu=0 out=output/a", ME)
    assert first.ok and first.job_id
    for text in ("llm gpu=1 out=output/a", "llm gpu=1 out=output/a/inner", "vlm gpu=1 out=./output//a/"):
        refused = await bot.handle(text, ME)
        assert not refused.ok and f"Job {first.job_id} is still active and writes to" in refused.text, text
        assert "output/a-2" in refused.text
    assert len(await rt.store.active()) == 1  # nothing was queued behind it
    assert (await bot.handle("llm gpu=1 out=output/b", ME)).ok  # another folder is fine

    await bot.handle(f"stop {first.job_id}", ME)
    await wait_until(lambda: _ended(rt, first.job_id or ""), 30, "the first job to stop")
    taker = await bot.handle("llm gpu=0 out=output/a", ME)  # the folder is free once its job has ended
    assert taker.ok
    again = await bot.handle(f"start {first.job_id}", ME)  # ... and starting the old job again is refused
    assert not again.ok and f"Job {taker.job_id} is still active" in again.text
    assert (await rt.store.require(first.job_id or "")).state is JobState.STOPPED

    for job in await rt.store.active():  # the trainers outlive the runtime: stop them, as the test leaves
        await bot.handle(f"stop {job.id}", ME)

    async def none_active() -> bool:
        return not await rt.store.active()

    await wait_until(none_active, 30, "the other jobs to stop")
