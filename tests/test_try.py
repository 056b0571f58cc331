"""Trying a job's model with the real swift on the tiny model (CPU): the recipe's check side by side, a try waiting
in the same line as the trainings for its GPU, the idle end, and a restarted bot ending the session an earlier one
left. Slow: marked `swift`. One job is trained for the session (tests/conftest.py's `trained`); the front ends' tries:
tests/test_try_fronts.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from bot.words.events import event_text
from runner import leases
from runner.config import Config
from runner.runtime import Runtime
from runner.supervisor import JobRequest
from runner.try_types import Message, TryAsk, TryDone, TryEvent, TryLoaded, TryLoading, TryToken, TryWaiting
from storage.models import JobState, Kind, TryState
from tests.trying import CONSOLE, Trained
from tests.waiting import wait_for_state, wait_until

pytestmark = pytest.mark.swift


@pytest.fixture
async def runtimes() -> AsyncIterator[list[Runtime]]:
    opened: list[Runtime] = []
    yield opened
    for rt in reversed(opened):
        await rt.close()


async def opened(runtimes: list[Runtime], config: Config) -> Runtime:
    rt = await Runtime.open(config)
    await rt.start()
    runtimes.append(rt)
    return rt


async def collect(stream: AsyncIterator[TryEvent]) -> list[TryEvent]:
    return [event async for event in stream]


def alive(pid: int | None) -> bool:
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def test_the_recipes_check_asks_both_questions_of_the_tuned_and_the_base_model(
    trained: Trained, runtimes: list[Runtime]
) -> None:
    rt = await opened(runtimes, trained.config())
    events = await collect(await rt.tries.open(TryAsk(trained.job_id), CONSOLE))
    loading = next(e for e in events if isinstance(e, TryLoading))
    assert loading.weights.kind == "checkpoint" and loading.gpus == ("cpu",)
    assert Path(loading.weights.path).name == f"checkpoint-{loading.weights.step}"
    done = events[-1]
    assert isinstance(done, TryDone) and done.check and done.load_s is not None
    assert [(a.question, a.side) for a in done.answers] == [
        ("你是谁？", "tuned"),
        ("你是谁？", "base"),
        ("Who are you?", "tuned"),
        ("Who are you?", "base"),
    ]
    for answer in done.answers:  # each answer is what was streamed of it, and it took tokens and time
        streamed = "".join(
            e.text for e in events if isinstance(e, TryToken) and (e.index, e.side) == (answer.index, answer.side)
        )
        assert answer.text == streamed and answer.text and answer.completion_tokens
        assert answer.first_token_s is not None and 0 < answer.first_token_s <= answer.total_s
    assert done.answers[0].text != done.answers[1].text  # the training changed what the model says
    assert done.first_token_s is not None and done.first_token_s < done.total_s
    # the session stays loaded: a follow-up question is answered without loading again
    again = await collect(
        await rt.tries.open(TryAsk(trained.job_id, (Message("user", "Who are you?"),), max_tokens=8), CONSOLE)
    )
    assert not any(isinstance(e, TryLoading | TryLoaded) for e in again)
    last = again[-1]
    assert isinstance(last, TryDone) and last.load_s is None and len(last.answers) == 1
    assert last.answers[0].completion_tokens == 8 and last.answers[0].finish_reason == "length"
    # a reader that leaves mid-answer (a closed browser, a dropped HTTP client) frees the session at once: the
    # next question is answered, after the rest of the abandoned answer is drained
    stream = await rt.tries.open(TryAsk(trained.job_id, (Message("user", "a long story"),), max_tokens=400), CONSOLE)
    async for event in stream:
        if isinstance(event, TryToken):
            break
    await stream.aclose()
    after = await asyncio.wait_for(
        collect(await rt.tries.open(TryAsk(trained.job_id, (Message("user", "Who are you?"),), max_tokens=8), CONSOLE)),
        60,
    )
    assert isinstance(after[-1], TryDone) and after[-1].answers[0].text == last.answers[0].text


async def test_a_try_waits_in_line_behind_a_training_on_its_gpu_and_a_job_queued_later_waits_for_it(
    trained: Trained, runtimes: list[Runtime]
) -> None:
    rt = await opened(runtimes, trained.config("long.toml"))
    config = rt.config
    busy = await rt.supervisor.submit(JobRequest(Kind.LLM, ("0",), config.base_dir / "output/busy", {}))
    busy = await wait_for_state(rt.store, busy.id, JobState.RUNNING)  # the loop, woken, starts it
    events: list[TryEvent] = []
    stream = await rt.tries.open(
        TryAsk(trained.job_id, (Message("user", "hello"),), gpus=("0",), max_tokens=8), CONSOLE
    )
    seen_loaded: list[dict[str, str]] = []

    async def consume() -> None:
        async for event in stream:
            events.append(event)
            if isinstance(event, TryLoaded):  # what `gpus` shows while the model is loaded
                seen_loaded.append(leases.held(await rt.store.holding()))

    consuming = asyncio.create_task(consume())

    async def told_its_place() -> bool:
        return any(isinstance(e, TryWaiting) for e in events)

    await wait_until(told_its_place, 30, "the try to say its place in line")
    waiting = next(e for e in events if isinstance(e, TryWaiting))
    assert (waiting.position, dict(waiting.held), waiting.gpus) == (1, {"0": busy.id}, ("0",))
    assert (await rt.store.require(trained.job_id)).try_state is TryState.WAITING
    later = await rt.supervisor.submit(JobRequest(Kind.LLM, ("0",), config.base_dir / "output/later", {}))
    assert later.state is JobState.QUEUED
    await rt.supervisor.stop(busy.id, by=None)
    await asyncio.wait_for(consuming, 240)
    assert isinstance(events[-1], TryDone) and events[-1].answers[0].text
    assert seen_loaded == [{"0": trained.job_id}]  # the try held GPU 0, and nothing else did

    async def later_running() -> bool:
        return (await rt.store.require(later.id)).state is JobState.RUNNING

    await wait_until(later_running, 60, "the job queued after the try to start once the try gave GPU 0 back")
    tried = await rt.store.require(trained.job_id)
    assert tried.try_state is TryState.NONE and tried.try_gpus == ()
    ended = [e for e in await rt.store.events(trained.job_id) if e.kind == "try_ended"]
    assert ended and event_text(ended[-1].facts) == "try session ended: its GPU is wanted"  # as every front end says
    busy_end = await rt.store.require(busy.id)
    assert busy_end.state is JobState.STOPPED
    await rt.supervisor.stop(later.id, by=None)

    async def later_ended() -> bool:
        return (await rt.store.require(later.id)).state.is_terminal

    await wait_until(later_ended, 60, "the later job to stop")


async def test_an_idle_session_ends_and_a_restarted_bot_ends_one_an_earlier_bot_left(
    trained: Trained, runtimes: list[Runtime]
) -> None:
    rt = await opened(runtimes, trained.config(try_idle_minutes=0.03, warm_start=False))
    ask = TryAsk(trained.job_id, (Message("user", "hi"),), max_tokens=4)
    await collect(await rt.tries.open(ask, CONSOLE))
    job = await rt.store.require(trained.job_id)
    assert job.try_state is TryState.READY and alive(job.try_run.pid)
    pid = job.try_run.pid

    async def idle_ended() -> bool:
        j = await rt.store.require(trained.job_id)
        return j.try_state is TryState.NONE and not alive(pid)

    await wait_until(idle_ended, 30, "the idle session to end and give its lease back")
    assert rt.tries.session(trained.job_id) is None

    await collect(await rt.tries.open(ask, CONSOLE))  # a new session; then a second bot starts on the same store
    pid = (await rt.store.require(trained.job_id)).try_run.pid
    assert alive(pid)
    await opened(runtimes, trained.config(warm_start=False))

    async def ended_by_the_new_bot() -> bool:
        j = await rt.store.require(trained.job_id)
        return j.try_state is TryState.NONE and not alive(pid)

    await wait_until(ended_by_the_new_bot, 10, "the restarted bot to end the session the earlier one left")
