"""Every front end reads the outbox from its own place, on one SQLite file: a real `trainbot console` process, the
Slack bot (in-process, against the Slack stand-in) and a real `trainbot serve` without Slack."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import requests

from runner.config import Config
from storage.models import JobState
from tests.api_env import serving
from tests.conftest import VENV_BIN
from tests.slack_env import (
    all_told,
    card_of,
    card_shows,
    command,
    fake_config,
    job_ended,
    job_id_from_answer,
    running_bot,
    topics,
    wait_card,
)
from tests.slack_standin import SlackStandIn
from tests.waiting import wait_until, wait_until_sync

# What the console prints for each kind of notice, after "job <id>" (bot/words/notices.py)
CONSOLE_WORDS = {
    " created: ": "job_created",
    " started by ": "job_submitted",
    " is waiting": "job_queued",
    " moved up": "job_queued",
    " started on ": "job_started",
    " saved a checkpoint": "checkpoint",
    " eval at step": "eval",
    " succeeded in ": "job_succeeded",
    " queued again by ": "job_restarted",
}


class ConsoleProcess:
    """`trainbot console` on the test's config; its output read line by line as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc, self.lines = proc, list[str]()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace"))

    def told(self, job_id: str) -> list[str]:
        """The kinds of the notices it printed about the job, in order."""
        kinds = []
        for line in self.lines:
            if f"job {job_id}" in line:
                kinds.append(next((k for words, k in CONSOLE_WORDS.items() if words in line), f"? {line}"))
        return kinds

    async def type(self, typed: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(typed.encode())
        await self.proc.stdin.drain()

    async def finish(self, typed: str = "") -> str:
        """Type the last lines, close its input, wait for it to exit; all it printed."""
        await self.type(typed)
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await asyncio.wait_for(self.proc.wait(), timeout=120)
        await self._reader
        assert self.proc.returncode == 0, "".join(self.lines)
        return "".join(self.lines)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await self._reader


async def start_console(config: Config, *args: str) -> ConsoleProcess:
    proc = await asyncio.create_subprocess_exec(
        str(VENV_BIN / "trainbot"),
        "--config",
        str(config.base_dir / "trainbot.toml"),
        "console",
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=config.base_dir,
    )
    return ConsoleProcess(proc)


def query(config: Config, sql: str) -> list[tuple[object, ...]]:
    """Read the bots' database (read-only: a file not there yet is not made); nothing before it has its schema."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{config.db_path}?mode=ro", uri=True)) as db:
            return list(db.execute(sql))
    except sqlite3.OperationalError:
        return []


def readers(config: Config) -> list[str]:
    return [str(r[0]) for r in query(config, "SELECT name FROM outbox_readers ORDER BY name")]


def kept(config: Config) -> int:
    return int(str(query(config, "SELECT COUNT(*) FROM outbox")[0][0]))


def slack_told(slack: SlackStandIn, card_ts: str) -> list[str]:
    """The kinds of the notices Slack shows about a job: its card, then its thread (the loss curve left out; the
    speed profile's note is a second reply of the card's notice)."""
    return ["job_created", *(t for t in topics(slack, card_ts) if t != "job_created" and not t.startswith("file:"))]


async def test_a_console_and_the_slack_bot_on_one_database_both_get_every_notice(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    config = fake_config(tmp_path, steps=8, save_steps=4, step_s=0.05)
    console = await start_console(config)
    try:
        await console.type("gpus\n")  # answered once it runs (and reads the outbox)

        async def console_ready() -> bool:
            return "GPU 0" in "".join(console.lines)

        await wait_until(console_ready, 60, "the console to answer")
        async with running_bot(config, slack) as bot:
            await command(slack, bot, "llm gpu=0 out=output/both")
            job_id = await job_id_from_answer(slack)
            card = await wait_card(slack, job_id)
            await wait_until(lambda: job_ended(bot, job_id), 60, "the job to end")
            await wait_until(lambda: all_told(bot), 30, "Slack to be told everything")

            async def console_told_the_end() -> bool:
                return "job_succeeded" in console.told(job_id)

            await wait_until(console_told_the_end, 30, "the console to print the end")
            in_slack = slack_told(slack, card["ts"])
        await console.finish()
    finally:
        await console.kill()
    assert in_slack[-1] == "job_succeeded" and "checkpoint" in in_slack and "job_started" in in_slack
    assert Counter(console.told(job_id)) == Counter(in_slack), (console.told(job_id), in_slack)  # nothing taken
    # both runtimes watched the run and read its checkpoints: each is recorded and told once
    saved = [str(r[0]) for r in query(config, "SELECT facts FROM events WHERE kind = 'checkpoint'")]
    assert len(saved) == len(set(saved)) == in_slack.count("checkpoint") == 2, (saved, in_slack)
    assert readers(config) == ["slack"] and kept(config) == 0  # the console left; Slack has had everything


async def test_a_restarted_slack_bot_resumes_from_its_own_place_and_doubles_nothing(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    config = fake_config(tmp_path, steps=8, save_steps=4, step_s=0.05)
    async with running_bot(config, slack) as bot:
        await command(slack, bot, "llm gpu=0 out=output/later --hold")  # its card, and it waits to be started
        job_id = await job_id_from_answer(slack)
        card = await wait_card(slack, job_id)
        await wait_until(lambda: all_told(bot), 30, "Slack to be told everything")
    first_run = slack_told(slack, card["ts"])

    # Slack is down; someone starts the job from a console on the same database, which shows it all
    console = await start_console(config, "--wait")
    try:
        await console.finish(f"start {job_id}\n")
    finally:
        await console.kill()
    in_console = console.told(job_id)
    assert in_console[0] == "job_submitted" and in_console[-1] == "job_succeeded", in_console
    assert kept(config) >= len(in_console)  # kept for Slack, which has not had them

    async with running_bot(config, slack) as bot:  # back: it resumes where it was
        await wait_until(lambda: all_told(bot), 30, "Slack to catch up")
        await wait_until(lambda: card_shows(slack, bot, job_id, JobState.SUCCEEDED), 30, "the card to be redrawn")
    assert slack_told(slack, card["ts"]) == first_run + in_console  # what it missed, once; nothing again
    assert (card_of(slack, job_id) or {}).get("ts") == card["ts"]  # one card, where it was
    assert kept(config) == 0


def test_serve_without_slack_keeps_no_notice(tmp_path: Path) -> None:
    config = fake_config(tmp_path)
    with serving(tmp_path) as api:
        for i in range(20):  # 40 notices: each job created, then deleted
            made = requests.post(
                f"{api.url}/training/llm/jobs", json={"gpu_id": "0", "output_dir": f"output/{i}"}, timeout=10
            )
            assert made.status_code == 201, made.text
            gone = requests.delete(f"{api.url}/training/jobs/{made.json()['job_id']}", timeout=10)
            assert gone.status_code == 200, gone.text
        assert wait_until_sync(lambda: kept(config) == 0, 10, "the outbox to be empty")
        assert readers(config) == []  # nobody reads it: nothing is kept for anybody
