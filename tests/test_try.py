"""Trying a job's model with the real swift on the tiny model (CPU): the recipe's check side by side, a try waiting
in the same line as the trainings for its GPU, the idle end, and a restarted bot ending the session an earlier one
left. Slow: marked `swift`. One job is trained for the module (tests/conftest.py's tiny model)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from selenium.webdriver.common.by import By

from bot.words.events import event_text
from demo.run import default_swift_bin, tiny_config_toml
from runner import leases
from runner.access import Caller
from runner.config import Config, load_config
from runner.runtime import Runtime
from runner.supervisor import JobRequest
from runner.try_types import Message, TryAsk, TryDone, TryEvent, TryLoaded, TryLoading, TryToken, TryWaiting
from storage.models import JobState, Kind, TryState
from tests.api_env import serving
from tests.browser import attr, browser, click, console_errors, sign_in, text_of
from tests.conftest import VENV_BIN
from tests.waiting import wait_until, wait_until_sync

pytestmark = pytest.mark.swift

CONSOLE = Caller(console=True)


@dataclass(frozen=True)
class Trained:
    root: Path
    job_id: str

    def config(self, name: str = "trainbot.toml", **overrides: Any) -> Config:
        return load_config(
            self.root / name, base_dir=self.root, overrides={f"runner.{k}": v for k, v in overrides.items()}
        )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_llm: dict[str, Any]) -> Trained:
    """A job trained to its end on the CPU, through the real console; a second config (`long.toml`) makes long
    jobs on the fake GPU 0, on the same store."""
    root = tmp_path_factory.mktemp("try")
    gpu0 = '[gpus]\ninventory = 1\n[access]\ntry_users = ["http:anonymous", "UANN", "UCAT"]\n'
    (root / "trainbot.toml").write_text(tiny_config_toml(tiny_llm, swift_bin=default_swift_bin(), sections=gpu0))
    (root / "long.toml").write_text(
        tiny_config_toml(tiny_llm, swift_bin=default_swift_bin(), sections=gpu0, extra={"num_train_epochs": 40})
    )
    done = subprocess.run(
        [str(VENV_BIN / "trainbot"), "--config", str(root / "trainbot.toml"), "console", "--wait"],
        input="llm gpu=cpu out=output/tried\n",
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
        check=True,
    )
    assert "succeeded" in done.stdout, done.stdout[-3000:]
    job_id = done.stdout.split("Job ", 1)[1].split()[0]
    return Trained(root, job_id)


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
    assert busy.state is JobState.RUNNING
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
    assert ended and event_text(ended[-1]) == "try session ended: its GPU is wanted"  # as every front end shows it
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


def console(trained: Trained, typed: str) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "trainbot"), "--config", str(trained.root / "trainbot.toml"), "console"],
        input=typed,
        capture_output=True,
        text=True,
        cwd=trained.root,
        timeout=300,
        check=True,
    )
    return done.stdout


def test_the_consoles_try_prints_the_check_and_an_answer_as_they_stream(trained: Trained) -> None:
    out = console(trained, f"try {trained.job_id}\ntry {trained.job_id} What's your name; who made you?\n")
    check, asked = out.split("asking job", 1)
    # the job by its id and name (its output folder's last part: no name= was given)
    assert f"checking job {trained.job_id} “tried”'s model" in check and "loading checkpoint" in check
    headings = [
        line for line in check.splitlines() if " · " in line and line.split(" · ")[0] in ("fine-tuned", "base model")
    ]
    assert headings == [
        "fine-tuned · 你是谁？",
        "base model · 你是谁？",
        "fine-tuned · Who are you?",
        "base model · Who are you?",
    ]
    assert check.count(" tokens · first token ") == 4 and "↳ checkpoint" in check
    # a question is taken as typed (quotes, `;` and all: no shell, no grammar in it), answered by the loaded model
    assert "fine-tuned · What's your name; who made you?" in asked and "loading" not in asked
    assert "↳ checkpoint" in asked and "⚠️" not in out
    assert "\x1b" not in out  # whatever the model says, no terminal escape reaches the console


def test_a_try_of_a_job_without_a_checkpoint_is_answered_clearly(trained: Trained) -> None:
    out = console(trained, "llm gpu=cpu out=output/held --hold\n")
    held = out.split("Job ", 1)[1].split()[0]
    out = console(trained, f"try {held}\ntry {trained.job_id} checkpoint=99999 hi\ntry {trained.job_id} {'x' * 2001}\n")
    assert f"⚠️ job {held} has not started yet (created): there is no checkpoint to try yet" in out
    assert f"⚠️ job {trained.job_id} has no checkpoint 99999; it has " in out
    assert "⚠️ the question is 2001 characters long; a question has at most 2000" in out


def test_the_apis_chat_answers_plain_and_streamed_in_openais_shapes(trained: Trained) -> None:
    url = f"/training/jobs/{trained.job_id}/chat"
    question = {"messages": [{"role": "user", "content": "Who are you?"}], "max_tokens": 6, "temperature": 0}
    cat = {"Authorization": "Bearer tok-cat"}  # may try any job (try_users); with tokens, loopback needs one
    with serving(trained.root, {"TRAINBOT_API_TOKENS": "tok-bob=UBOB,tok-cat=UCAT"}) as api:
        reply = requests.post(api.url + url, json=question, headers=cat, timeout=300)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
        (choice,) = body["choices"]
        assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
        assert choice["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 6
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 6
        facts = body["trainbot"]
        assert facts["weights"]["kind"] == "checkpoint" and facts["gpu_id"] == "cpu" and facts["load_s"] > 0
        assert body["model"] == f"{trained.job_id}/checkpoint-{facts['weights']['step']}"

        streamed = requests.post(
            api.url + url, json={**question, "stream": True}, headers=cat, stream=True, timeout=300
        )
        assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
        data = [line[6:] for line in streamed.iter_lines(decode_unicode=True) if line.startswith("data: ")]
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d) for d in data[:-1]]
        assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        assert text == choice["message"]["content"]  # greedy: the same answer, now in pieces
        assert len(chunks) > 3 and chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert chunks[-1]["usage"]["completion_tokens"] == 6 and chunks[-1]["trainbot"]["load_s"] is None

        # bad input: 422 naming the field; a job without a checkpoint: 409; someone else's job: 403
        for bad, field in (
            ({**question, "max_tokens": 0}, "max_tokens"),
            ({**question, "temperature": "0"}, "temperature"),
            ({**question, "messages": [{"role": "user", "content": "x" * 2001}]}, "messages[0].content"),
            ({**question, "messages": [{"role": "robot", "content": "hi"}]}, "'user' or 'assistant'"),
            ({**question, "messages": [{"role": "assistant", "content": "hi"}]}, "messages:"),
            ({**question, "checkpoint": 99999}, "checkpoint:"),
            ({**question, "gpu_id": "7"}, "gpu_id:"),
            ({**question, "stream": "yes"}, "stream"),
            ({**question, "top_k": 5}, "top_k"),
        ):
            refused = requests.post(api.url + url, json=bad, headers=cat, timeout=60)
            assert refused.status_code == 422 and field in refused.json()["error"], (bad, refused.text)
            assert "/train" not in refused.json()["error"]
        held = requests.post(
            api.url + "/training/llm/jobs", json={"gpu_id": "cpu", "output_dir": "output/h"}, headers=cat, timeout=30
        ).json()["job_id"]
        refused = requests.post(api.url + f"/training/jobs/{held}/chat", json=question, headers=cat, timeout=60)
        assert refused.status_code == 409 and "no checkpoint" in refused.json()["error"]
        refused = requests.post(api.url + url, json=question, headers={"Authorization": "Bearer tok-bob"}, timeout=60)
        assert refused.status_code == 403, refused.text
        schema = requests.get(api.url + "/openapi.json", headers=cat, timeout=30).json()
        assert "/training/jobs/{job_id}/chat" in schema["paths"]


def test_the_job_pages_try_box_streams_the_answer_as_text(trained: Trained) -> None:
    with (
        serving(trained.root, {"TRAINBOT_API_TOKENS": "tok-ann=UANN"}) as api,
        browser(trained.root / "chrome") as driver,
    ):
        sign_in(driver, api.url, "tok-ann")
        driver.get(f"{api.url}/jobs/{trained.job_id}")
        question = "<b>bold?</b> <script>window.pwned = 1</script> Who are you?"
        driver.find_element(By.ID, "try-question").send_keys(question)
        click(driver, "#try-ask")

        def done(n: int) -> bool:
            return attr(driver, f"#try-turns .try-turn:nth-child({n})", "data-done") == "1"

        wait_until_sync(lambda: done(1), 240, "the answer in the box")
        assert text_of(driver, "#try-turns .try-turn:nth-child(1) .q") == f"› {question}"
        assert (
            driver.execute_script(
                "return document.querySelectorAll('#try-turns b, #try-turns script').length + (window.pwned || 0)"
            )
            == 0
        )  # shown as text, never run or rendered
        assert text_of(driver, "#try-turns .try-turn:nth-child(1) pre.a")
        assert "tokens · first token" in text_of(driver, "#try-turns .try-turn:nth-child(1) .try-line")
        assert "done in" in text_of(driver, "#try-status")
        click(driver, "#try-ask")  # empty: the recipe's check, side by side
        wait_until_sync(lambda: done(2), 240, "the check in the box")
        sides = driver.execute_script(
            "return Array.from(document.querySelectorAll('#try-turns .try-turn:nth-child(2) pre.a'))"
            ".map(e => e.dataset.index + '/' + e.dataset.side + '/' + (e.textContent.length > 0))"
        )
        assert sides == ["0/tuned/true", "0/base/true", "1/tuned/true", "1/base/true"]
        assert "Who are you?" in text_of(driver, "#try-turns .try-turn:nth-child(2)")
        assert not console_errors(driver)
