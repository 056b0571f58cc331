"""Every process trainbot starts gets the bot's environment less its secrets: read from a real job's
/proc/<pid>/environ (local backend here; Slurm in tests/test_slurm_backend.py)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import psutil
import pytest

from runner.backends import ProcessRef
from runner.backends.local import LocalBackend
from runner.child_env import BOT_SECRETS, child_env
from runner.command import SwiftCommand
from runner.config import Config
from runner.profiles import swift_has_liger
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
async def test_local_job_gets_no_secret_but_what_it_needs(tmp_path: Path, config: Config, bot_env: None,
                                                          purpose: str) -> None:
    config = dataclasses.replace(config, scrub_env=("TB_OWN_SECRET",))
    backend = LocalBackend(tmp_path / "exits", config)
    sub = "sft" if purpose == "train" else "export"
    argv = (sys.executable, str(FAKE_SWIFT), sub, "--output_dir", str(tmp_path / "out"), "--max_steps", "9")
    ref = ProcessRef("envjob", purpose)
    launched = await backend.launch(ref, SwiftCommand(argv, {"TB_JOB": "1"}), log_path=tmp_path / "job.log",
                                    gpus=("cpu",))
    ref = dataclasses.replace(ref, pid=launched.pid, proc_start_time=launched.proc_start_time)
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
    """The liger probe runs the python behind `swift`: here a stand-in that writes down its environment."""
    dump, seen = tmp_path / "python", tmp_path / "seen.env"
    dump.write_text(f"#!/bin/sh\nenv > {seen}\nexit 1\n")
    swift = tmp_path / "venv" / "bin" / "swift"
    swift.parent.mkdir(parents=True)
    swift.write_text(f"#!{dump}\n")
    for script in (dump, swift):
        script.chmod(0o755)
    assert not swift_has_liger(str(swift))
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert env["HF_TOKEN"] == "hf-for-the-job" and env["PYTHONNOUSERSITE"] == "1"
    assert not set(env) & set(BOT_SECRETS)
    assert "TB_OWN_SECRET" in child_env(None)  # only a config names it
