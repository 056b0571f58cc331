"""A try on Slurm: one short batch job a try, on the test Slurm's CPU with the real swift and the tiny model. The
job trained once for the try tests (tests/conftest.py's `trained`) is tried from a copy of its store, on a
Slurm-backed config (its checkpoints are read where they are). Slow: marked `swift` and `slurm`."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.words.tries import refusal_text, waiting_text
from demo.run import default_swift_bin, tiny_config_toml
from runner import slurm_cli
from runner.config import Config, load_config
from runner.runtime import Runtime
from runner.try_errors import TryFailed
from runner.try_types import Message, TryAsk, TryDone, TryEvent, TryLoading, TryWaiting
from runner.try_weights import CHECKPOINT
from storage.models import TryState
from tests.slurm_bot import SLURM_SECTIONS
from tests.slurm_cluster import require_slurm
from tests.trying import CONSOLE, VENV_BIN, Trained
from tests.waiting import wait_until

pytestmark = [pytest.mark.swift, pytest.mark.slurm]


def slurm_config(trained: Trained, tiny_llm: dict[str, Any], root: Path, slurm: str = "") -> Config:
    """A Slurm-backed config over a copy of the trained job's store (the other try tests keep theirs)."""
    require_slurm()
    path = root / "trainbot.toml"
    sections = SLURM_SECTIONS.format(poll=0.2) + slurm
    path.write_text(tiny_config_toml(tiny_llm, swift_bin=default_swift_bin(), sections=sections))
    config = load_config(path, base_dir=root)
    config.db_path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(trained.config().db_path) as source, sqlite3.connect(config.db_path) as copy:
        source.backup(copy)
    return config


@pytest.fixture
def on_slurm(trained: Trained, tiny_llm: dict[str, Any], tmp_path: Path) -> Config:
    return slurm_config(trained, tiny_llm, tmp_path)


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


def in_squeue(slurm_id: str) -> str:
    """The job's state if squeue shows it waiting, running or completing; "" once it has left."""
    states = "--states=PENDING,CONFIGURING,RUNNING,COMPLETING"
    argv = ["squeue", "--noheader", f"--jobs={slurm_id}", states, "--format=%T"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def test_the_consoles_try_runs_as_a_slurm_batch_job_and_leaves_none_behind(trained: Trained, on_slurm: Config) -> None:
    done = subprocess.run(
        [str(VENV_BIN / "trainbot"), "--config", str(on_slurm.base_dir / "trainbot.toml"), "console"],
        input=f"try {trained.job_id}\n",
        capture_output=True,
        text=True,
        cwd=on_slurm.base_dir,
        timeout=600,
        check=True,
    )
    out = done.stdout
    assert "⚠️" not in out, out[-3000:]
    headings = [line for line in out.splitlines() if line.split(" · ")[0] in ("fine-tuned", "base model")]
    assert headings == [
        "fine-tuned · 你是谁？",
        "base model · 你是谁？",
        "fine-tuned · Who are you?",
        "base model · Who are you?",
    ]
    assert out.count(" tokens · first token ") == 4
    assert "loading checkpoint" in out and "on the CPU, in Slurm job " in out
    assert "(on Slurm each try is a batch job that loads the model afresh)" in out
    slurm_id = out.split("in Slurm job ", 1)[1].split()[0].strip("…")
    assert f"on the CPU in Slurm job {slurm_id}" in out  # the closing line
    # the batch job ran on Slurm's node as the try's, and has left Slurm's queue by the time the try is answered
    job = subprocess.run(["scontrol", "show", "job", "-o", slurm_id], capture_output=True, text=True, check=True).stdout
    record = slurm_cli.job_from_record(slurm_cli.parse_record(job))
    assert record.state == "COMPLETED" and record.raw["JobName"].startswith(f"trainbot-{trained.job_id}-try-")
    assert "gpu" not in record.raw.get("TresPerNode", "")  # gpu=cpu: no GPU asked of Slurm
    assert in_squeue(slurm_id) == ""
    # its questions and answers went through files under the data dir, gone once it was answered; its log is the
    # try's log
    token = record.raw["JobName"].rsplit("-", 1)[1]
    folder = on_slurm.data_dir / "tries"
    assert folder.is_dir() and not list(folder.glob(f"{trained.job_id}-{token}.*"))
    assert Path(record.stdout_path or "") == on_slurm.log_dir / f"llm_try_{trained.job_id}.log"


@pytest.fixture
def broken_checkpoint(trained: Trained) -> Iterator[int]:
    """A copy of the job's last checkpoint without its adapter weights, as a later checkpoint of the job: it is
    on disk (the try is planned), but the model cannot load."""
    found = [p for p in (trained.root / "output" / "tried").rglob("checkpoint-*") if CHECKPOINT.fullmatch(p.name)]
    last = max(found, key=lambda p: int(p.name.split("-")[1]))
    step = int(last.name.split("-")[1]) + 1000
    broken = last.with_name(f"checkpoint-{step}")
    shutil.copytree(last, broken)
    for weights in broken.glob("adapter_model.*"):
        weights.unlink()
    yield step
    shutil.rmtree(broken)


async def test_a_failing_or_cancelled_batch_job_ends_the_try_with_its_typed_error(
    trained: Trained, on_slurm: Config, runtimes: list[Runtime], broken_checkpoint: int
) -> None:
    runtime = await opened(runtimes, on_slurm)
    ask = TryAsk(trained.job_id, (Message("user", "Who are you?"),), checkpoint=broken_checkpoint, max_tokens=4)
    with pytest.raises(TryFailed) as failed:
        [event async for event in await runtime.tries.open(ask, CONSOLE)]
    exc = failed.value
    # the model did not load: swift's own words, and the end of the log, as a local try's process says them
    assert exc.cause == "child_error" and f"checkpoint-{broken_checkpoint}" in exc.detail
    assert "load_adapter" in exc.tail and exc.log_path == str(on_slurm.log_dir / f"llm_try_{trained.job_id}.log")
    words = refusal_text(exc)
    assert words.startswith("the model could not answer: ") and "its log ends:" in words
    job = await runtime.store.require(trained.job_id)
    assert job.try_state is TryState.NONE

    # one cancelled by hand while it loads: the try ends, saying how Slurm ended it
    events: list[TryEvent] = []
    stream = await runtime.tries.open(TryAsk(trained.job_id, (Message("user", "hi"),), max_tokens=4), CONSOLE)

    async def consume() -> None:
        async for event in stream:
            events.append(event)

    consuming = asyncio.create_task(consume())

    async def loading() -> TryLoading | None:
        return next((e for e in events if isinstance(e, TryLoading)), None)

    started: TryLoading = await wait_until(loading, 120, "the batch job to start")
    assert started.slurm_job is not None
    await slurm_cli.cancel(started.slurm_job)
    with pytest.raises(TryFailed) as cancelled:
        await asyncio.wait_for(consuming, 120)
    exc = cancelled.value
    assert (exc.cause, exc.slurm_state) == ("ended", "CANCELLED") and not any(isinstance(e, TryDone) for e in events)
    assert f"its Slurm batch job ended CANCELLED (exit status {exc.returncode}) before answering" in refusal_text(exc)
    assert in_squeue(started.slurm_job) == ""


async def test_a_try_held_in_slurms_queue_says_so_and_answers_once_released(
    trained: Trained, tiny_llm: dict[str, Any], tmp_path: Path, runtimes: list[Runtime]
) -> None:
    config = slurm_config(trained, tiny_llm, tmp_path, slurm='extra_args = ["--hold"]\n')
    folder = config.data_dir / "tries"
    folder.mkdir(parents=True)
    (folder / f"{trained.job_id}-0123456789ab.answers.jsonl").write_text('{"loaded": {}}\n')  # an earlier bot's
    runtime = await opened(runtimes, config)
    assert not list(folder.iterdir())  # a new bot removes what tries an earlier one left
    events: list[TryEvent] = []
    stream = await runtime.tries.open(TryAsk(trained.job_id, (Message("user", "hi"),), max_tokens=4), CONSOLE)

    async def consume() -> None:
        async for event in stream:
            events.append(event)

    consuming = asyncio.create_task(consume())

    async def held() -> TryWaiting | None:
        return next((e for e in events if isinstance(e, TryWaiting) and e.slurm and e.slurm.reason), None)

    waiting: TryWaiting = await wait_until(held, 60, "the try to say Slurm holds it")
    assert waiting.slurm is not None and waiting.slurm.reason == "JobHeldUser" and waiting.slurm_job
    assert waiting_text(waiting) == (
        f"⏳ in Slurm's queue as Slurm job {waiting.slurm_job}: held by its owner "
        f"(scontrol release <slurm id> lets it go) (JobHeldUser)"
    )
    assert not any(isinstance(e, TryLoading) for e in events)
    (requests,) = folder.glob("*.requests.jsonl")  # the question waits in its file for the batch job's stdin
    assert '"hi"' in requests.read_text()
    await slurm_cli.checked(["scontrol", "release", waiting.slurm_job])
    await asyncio.wait_for(consuming, 180)
    done = events[-1]
    assert isinstance(done, TryDone) and done.slurm_job == waiting.slurm_job and done.answers[0].completion_tokens
    assert in_squeue(waiting.slurm_job) == ""
    assert not list(folder.iterdir())  # its requests and answers files went with it
