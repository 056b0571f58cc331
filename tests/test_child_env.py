"""Every process trainbot starts gets the bot's environment less its secrets: read from a real job's
/proc/<pid>/environ (local backend here; Slurm in tests/test_slurm_backend.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sqlite3
import sys
from pathlib import Path

import psutil
import pytest

from bot.words.config import config_error_text
from runner.backends import ProcessRef
from runner.backends.local import LocalBackend
from runner.child_env import BOT_SECRETS, child_env
from runner.command import SwiftCommand
from runner.config import Config, ConfigError, load_config
from runner.profiles import SwiftSite, swift_site
from tests.slack_env import APP, BOT, fake_config, job_id_from_answer, standin
from tests.test_slack_serve import serve
from tests.waiting import wait_until

SECRETS = (*BOT_SECRETS, "TB_OWN_SECRET")
FAKE_SWIFT = Path(__file__).resolve().parent / "fake_swift.py"


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


@pytest.fixture
def bot_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot's environment as `trainbot serve` has it: its secrets, and what jobs need."""
    for name in SECRETS:
        monkeypatch.setenv(name, f"secret-{name}")
    monkeypatch.setenv("HF_TOKEN", "hf-for-the-job")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("FAKE_SWIFT_STEP_S", "5")  # slow enough to read their environment
    monkeypatch.setenv("FAKE_SWIFT_EXPORT_S", "30")


@pytest.mark.parametrize("purpose", ["train", "export"])
async def test_local_job_gets_no_secret_but_what_it_needs(
    tmp_path: Path, config: Config, bot_env: None, purpose: str
) -> None:
    config = config.changed(runner={"scrub_env": ("TB_OWN_SECRET",)})
    backend = LocalBackend(tmp_path / "exits", config)
    sub = "sft" if purpose == "train" else "export"
    argv = (sys.executable, str(FAKE_SWIFT), sub, "--output_dir", str(tmp_path / "out"), "--max_steps", "9")
    ref = ProcessRef("envjob", purpose)
    launched = await backend.launch(
        ref, SwiftCommand(argv, {"TB_JOB": "1"}), log_path=tmp_path / "job.log", gpus=("cpu",)
    )
    ref = dataclasses.replace(ref, run=launched.run(tmp_path / "job.log"))
    try:

        async def job_process() -> psutil.Process | None:
            return next(iter(psutil.Process(launched.pid).children()), None)

        job = await wait_until(job_process, 20, "the job's process")
        env = environ_of(job.pid)
        assert not [name for name in env if name in SECRETS or name.startswith("SLACK_")]
        assert not [value for value in env.values() if value.startswith("secret-")]
        assert env["HF_TOKEN"] == "hf-for-the-job" and env["HTTPS_PROXY"] == "http://proxy.example:3128"
        assert env["TB_JOB"] == "1" and env["CUDA_VISIBLE_DEVICES"] == ""
    finally:
        await backend.kill(ref)


def test_probe_of_the_swift_install_gets_no_secret(tmp_path: Path, bot_env: None) -> None:
    """The site probe (Liger, transformers) runs the python behind `swift`: here a stand-in that writes down its
    environment."""
    dump, seen = tmp_path / "python", tmp_path / "seen.env"
    dump.write_text(f"#!/bin/sh\nenv > {seen}\nexit 1\n")
    swift = tmp_path / "venv" / "bin" / "swift"
    swift.parent.mkdir(parents=True)
    swift.write_text(f"#!{dump}\n")
    for script in (dump, swift):
        script.chmod(0o755)
    assert swift_site(str(swift)) == SwiftSite()
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert env["HF_TOKEN"] == "hf-for-the-job" and env["PYTHONNOUSERSITE"] == "1"
    assert not set(env) & set(BOT_SECRETS)
    assert "TB_OWN_SECRET" in child_env(None)  # only a config names it


def _job_processes(serve_pid: int, subcommand: str) -> list[psutil.Process]:
    try:
        found = psutil.Process(serve_pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for proc in found:
        try:
            if "fake_swift.py" in " ".join(proc.cmdline()) and subcommand in proc.cmdline():
                out.append(proc)
        except psutil.Error:
            pass
    return out


def _job_state(config: Config, job_id: str) -> str | None:
    with contextlib.closing(sqlite3.connect(f"file:{config.db_path}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else str(row[0])


async def test_jobs_of_trainbot_serve_get_none_of_its_secrets(tmp_path: Path) -> None:
    """The real `trainbot serve`, with every secret in its environment: its training and export processes."""
    secrets = {name: f"secret-{name}" for name in SECRETS} | {
        "SLACK_BOT_TOKEN": BOT,
        "SLACK_APP_TOKEN": APP,
        "TRAINBOT_API_TOKENS": "secret-api=U1",
    }
    async with standin() as slack:
        config = fake_config(tmp_path, steps=400, save_steps=2, step_s=0.3, slack_api_url=slack.api_url)
        toml = tmp_path / "trainbot.toml"
        toml.write_text(toml.read_text().replace("[runner]\n", '[runner]\nscrub_env = ["TB_OWN_SECRET"]\n'))
        env = secrets | {"HF_TOKEN": "hf-for-the-job", "FAKE_SWIFT_EXPORT_S": "60"}
        proc = await serve(tmp_path, env, "--port", "0")
        # its debug log must be read as it comes: a full pipe would stall the bot's writes (and its acks)
        drained = asyncio.create_task(_drain(proc))
        try:
            await slack.wait_for_socket(30)
            await slack.wait_for_ack(await slack.push_slash_command("llm gpu=0 out=output/a"))
            job_id = await job_id_from_answer(slack, timeout=20)
            trainers = await wait_until(lambda: _async(_job_processes(proc.pid, "sft")), 30, "the training process")
            envs = [environ_of(p.pid) for p in trainers]
            await wait_until(
                lambda: _async(list((tmp_path / "output" / "a").glob("v0-*/checkpoint-2"))), 30, "a checkpoint"
            )
            await slack.wait_for_ack(await slack.push_slash_command(f"stop {job_id}"))
            await wait_until(lambda: _async(_job_state(config, job_id) == "stopped"), 30, "the job to stop")
            await slack.wait_for_ack(await slack.push_slash_command(f"export {job_id}"))
            exporters = await wait_until(lambda: _async(_job_processes(proc.pid, "export")), 30, "the export")
            envs += [environ_of(p.pid) for p in exporters]
            for p in exporters:  # it was made to last a minute, and would outlive serve: end it, launcher and all
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(os.getpgid(p.pid), signal.SIGKILL)
        finally:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 30)
            await drained
    for env in envs:
        assert not [name for name in env if name in SECRETS or name.startswith("SLACK_")]
        assert not [value for value in env.values() if value.startswith("secret-") or value in (BOT, APP)]
        assert env["HF_TOKEN"] == "hf-for-the-job"


async def _async(value: object) -> object:
    return value


def test_config_mistakes_in_the_new_keys_are_named(tmp_path: Path) -> None:
    for key, value, named in (
        ("runner.scrub_env", "MY_TOKEN", "[runner] scrub_env"),
        ("paths.model_roots", "/models", "[paths] model_roots"),
        ("paths.data_roots", [1], "[paths] data_roots"),
    ):
        with pytest.raises(ConfigError) as refused:
            load_config(base_dir=tmp_path, overrides={key: value})
        assert config_error_text(refused.value).startswith(f"config: {named}")
    config = load_config(
        base_dir=tmp_path, overrides={"paths.data_roots": ["data", "/srv/sets"], "runner.scrub_env": ["MY_TOKEN"]}
    )
    assert config.data_roots == (tmp_path.resolve() / "data", Path("/srv/sets")) and config.model_roots == ()
    assert config.scrub_env == ("MY_TOKEN",)


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    while await proc.stderr.read(65536):
        pass
