"""Restarts lose nothing: the bot is killed with SIGKILL while a real swift job trains, and started again.

The bot runs as a real `trainbot console` process; the test reads the same SQLite file it writes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from runner.config import Config
from storage.jobs import JobStore
from storage.models import Job, JobState
from tests.conftest import VENV_BIN, MakeConfig
from tests.waiting import wait_until

pytestmark = pytest.mark.swift


async def start_bot(config_path: Path, cwd: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(VENV_BIN / "trainbot"),
        "--config",
        str(config_path),
        "console",
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )


async def only_job(store: JobStore) -> Job | None:
    jobs = await store.list_jobs()
    return jobs[0] if jobs else None


async def submit_and_kill_bot(config: Config, tmp_path: Path) -> tuple[JobStore, Job]:
    store = await JobStore.open(config.db_path)
    await store.register_reader("tests", keep_s=3600.0)  # reads nothing: every notice is kept to look at
    bot = await start_bot(tmp_path / "trainbot.toml", tmp_path)
    assert bot.stdin is not None
    bot.stdin.write(b"llm gpu=cpu out=output/r\n")
    await bot.stdin.drain()

    async def training() -> Job | None:
        job = await only_job(store)
        return job if job and job.state is JobState.RUNNING and job.progress.step else None

    job: Job = await wait_until(training, 120, "the job to be training")
    bot.send_signal(signal.SIGKILL)
    await bot.wait()
    assert job.train_run.pid is not None and psutil.pid_exists(job.train_run.pid)  # training goes on without the bot
    return store, job


async def run_bot_to_the_end(tmp_path: Path) -> str:
    bot = await start_bot(tmp_path / "trainbot.toml", tmp_path, "--wait")
    out, _ = await asyncio.wait_for(bot.communicate(b""), timeout=240)
    assert bot.returncode == 0, out.decode()
    return out.decode()


def assert_told_once(topics: list[str]) -> None:
    for topic in ("job_created", "job_started", "job_succeeded"):
        assert topics.count(topic) == 1, topics


async def test_bot_killed_mid_training_reattaches_and_the_job_finishes(make_config: MakeConfig, tmp_path: Path) -> None:
    config = make_config(extra={"num_train_epochs": 3})
    store, job = await submit_and_kill_bot(config, tmp_path)
    out = await run_bot_to_the_end(tmp_path)  # back while swift still trains: re-attach by pid + start time
    done = await store.require(job.id)
    assert done.state is JobState.SUCCEEDED and done.train_run.pid == job.train_run.pid
    assert done.progress.step == done.progress.max_steps
    assert_told_once([n.topic for n in await store.notices(job.id)])
    assert f"job {job.id} “r” succeeded" in out
    await store.close()


async def test_job_that_ended_while_the_bot_was_away_is_settled_from_its_files(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    config = make_config()
    store, job = await submit_and_kill_bot(config, tmp_path)
    assert job.train_run.pid is not None

    async def gone() -> bool:
        pid = job.train_run.pid
        return not psutil.pid_exists(pid or -1) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    await wait_until(gone, 180, "swift to finish with no bot around")
    assert (await store.require(job.id)).state is JobState.RUNNING  # nobody has looked yet
    out = await run_bot_to_the_end(tmp_path)
    done = await store.require(job.id)
    assert done.state is JobState.SUCCEEDED and done.exit_code == 0
    assert done.progress.last_checkpoint and Path(done.progress.last_checkpoint).is_dir()
    assert_told_once([n.topic for n in await store.notices(job.id)])
    assert f"job {job.id} “r” succeeded" in out
    await store.close()


async def test_console_reads_commands_and_prints_what_a_channel_would_see(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    make_config()
    bot = await start_bot(tmp_path / "trainbot.toml", tmp_path, "--wait")
    script = b"help stop\nllm gpu=cpu out=output/c\nlist\nllm gpu=cpu\nstatus nosuchjob\n"
    out_b, _ = await asyncio.wait_for(bot.communicate(script), timeout=240)
    out = out_b.decode()
    assert bot.returncode == 0, out
    assert "/train stop <id>" in out  # help
    assert "`llm` needs `out=`" in out  # a specific rejection
    assert "No job is named nosuchjob" in out  # not an id: looked for by name (plain text in the console)
    for what in ("created", "started on", "saved a checkpoint", "succeeded in"):
        assert what in out, (what, out[-3000:])
    assert "⋯" in out and "step" in out  # the live progress line
    assert os.path.exists(tmp_path / ".trainbot" / "trainbot.db")
