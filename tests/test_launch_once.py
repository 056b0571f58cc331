"""A job is launched once, whatever moment `trainbot serve` dies at (issue 26, case 1): a real `trainbot serve`
(fake swift, real launcher, real SQLite) is SIGKILLed mid-launch and started again (the backends' side, Slurm's
too: tests/test_launch_once_backends.py).

The moment is made exact, with real parts only:
- the job's log is a FIFO (tests/launching.FifoLog): the bot, which opens the log between recording the launch and
  starting the launcher, waits there until the test opens the FIFO;
- the test holds the store's write lock (`write_lock`) while it lets the bot on: the bot starts the launcher, then
  waits for the lock to record the launcher's pid, and is killed there;
- where the launcher must be caught before it has done anything, a `sitecustomize` on the PYTHONPATH (written into
  the test's folder) holds the first `runner/launcher.py` of a training (LAUNCH_ONCE_HOLD=.train.) or an export
  (.export.: its exit file's name says which) until the test lets it go.
FAKE_SWIFT_STARTS counts every trainer and export that ever started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from bot.words.events import event_text
from runner import launcher
from runner.config import Config
from storage.events import decode
from storage.models import JobState
from tests.api_env import Served, serving, start_serve
from tests.launching import FifoLog, in_thread, leave_nothing, row, starts, write_lock
from tests.slack_env import fake_config
from tests.waiting import wait_until_sync

HOLD = """import os, sys, time
gate, hold = os.environ.get("LAUNCH_ONCE_GATE"), os.environ.get("LAUNCH_ONCE_HOLD")
if gate and hold and sys.argv[0].endswith(os.path.join("runner", "launcher.py")) and hold in " ".join(sys.argv):
    try:
        os.mkdir(os.path.join(gate, "held"))  # the first such launcher only
    except FileExistsError:
        pass
    else:
        with open(os.path.join(gate, "arrived"), "w") as f:
            f.write(str(os.getpid()))
        end = time.monotonic() + 120
        while not os.path.exists(os.path.join(gate, "go")) and time.monotonic() < end:
            time.sleep(0.02)
"""


def events(config: Config, job_id: str) -> list[str]:
    """The job's events as the console words them."""
    with contextlib.closing(sqlite3.connect(config.db_path, timeout=10)) as conn:
        rows = conn.execute("SELECT kind, facts, message FROM events WHERE job_id = ? ORDER BY id", (job_id,))
        return [event_text(decode(*r)) for r in rows]


def kill_mid_launch(
    served: Served,
    config: Config,
    log: Path,
    ask: Callable[[], object],
    recorded: Callable[[dict[str, Any]], bool],
    job_id: str,
    launched: Callable[[], bool],
) -> FifoLog:
    """`ask` for a launch; once the store shows it `recorded`, let the bot start its launcher while the store is
    locked, and SIGKILL it once `launched()`: the launch is in the store, its pid is not."""
    fifo = FifoLog(log)
    in_thread(ask)
    wait_until_sync(lambda: recorded(row(config, job_id)), 30, "the launch to be recorded")
    with write_lock(config.db_path):
        fifo.let_on()
        wait_until_sync(launched, 30, "the launcher to start")
        served.proc.send_signal(signal.SIGKILL)
        served.proc.wait(30)
    fifo.make_plain()
    return fifo


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[tuple[Config, Path, dict[str, str]]]:
    """A fake-swift config counting its starts, and the environment of a `serve` whose first launcher is held."""
    counted = tmp_path / "starts.txt"
    gate = tmp_path / "gate"
    gate.mkdir()
    config = fake_config(
        tmp_path,
        steps=20,
        step_s=0.1,
        env={"FAKE_SWIFT_STARTS": str(counted), "FAKE_SWIFT_EXPORT_UNTIL": str(gate / "exported")},
    )
    (gate / "sitecustomize.py").write_text(HOLD)
    env = {
        "PYTHONPATH": os.pathsep.join(p for p in (str(gate), os.environ.get("PYTHONPATH")) if p),
        "LAUNCH_ONCE_GATE": str(gate),
    }
    try:
        yield config, counted, env
    finally:
        (gate / "go").touch()
        (gate / "exported").touch()
        leave_nothing(tmp_path)


def create(api: Served, **body: object) -> str:
    reply = requests.post(f"{api.url}/training/llm/jobs", json={"gpu_id": "0", **body}, timeout=30)
    assert reply.status_code == 201, reply.text
    job_id: str = reply.json()["job_id"]
    return job_id


def ended(config: Config, job_id: str) -> dict[str, Any] | None:
    found = row(config, job_id)
    return found if JobState(found["state"]).is_terminal else None


def test_bot_killed_after_its_launcher_started_swift_follows_that_trainer_and_starts_no_second(
    scene: tuple[Config, Path, dict[str, str]], tmp_path: Path
) -> None:
    config, counted, env = scene
    first = start_serve(tmp_path, env)
    job_id = create(first, output_dir="output/once")
    fifo = kill_mid_launch(
        first,
        config,
        config.log_dir / f"llm_training_{job_id}.log",
        lambda: requests.post(f"{first.url}/training/jobs/{job_id}/start", timeout=60),
        lambda r: r["state"] == "starting",
        job_id,
        lambda: bool(starts(counted, "sft")),
    )
    mid = row(config, job_id)
    assert mid["state"] == "starting" and mid["pid"] is None  # killed between the launch and its pid
    try:
        with serving(tmp_path, env):
            done = wait_until_sync(lambda: ended(config, job_id), 60, "the job to end")
        assert done["state"] == "succeeded" and done["step"] == done["max_steps"] == 20
        assert len(starts(counted, "sft")) == 1, counted.read_text()  # one trainer, found again and followed
        claim = launcher.read_claim(config.data_dir / "exits" / f"{job_id}.train.{mid['launch_token']}.json")
        assert claim is not None and claim.pid == done["pid"] and claim.returncode == 0  # the first bot's launcher
        assert not [e for e in events(config, job_id) if e.startswith("back in line")]
    finally:
        fifo.close()


def test_launcher_that_comes_after_the_restart_starts_nothing_and_the_job_runs_once(
    scene: tuple[Config, Path, dict[str, str]], tmp_path: Path
) -> None:
    config, counted, env = scene
    gate, env = tmp_path / "gate", env | {"LAUNCH_ONCE_HOLD": ".train."}
    first = start_serve(tmp_path, env)
    job_id = create(first, output_dir="output/late")
    fifo = kill_mid_launch(
        first,
        config,
        config.log_dir / f"llm_training_{job_id}.log",
        lambda: requests.post(f"{first.url}/training/jobs/{job_id}/start", timeout=60),
        lambda r: r["state"] == "starting",
        job_id,
        lambda: (gate / "arrived").exists(),
    )
    late = psutil.Process(int((gate / "arrived").read_text()))  # the first bot's launcher, held before it began
    assert row(config, job_id)["pid"] is None
    try:
        with serving(tmp_path, env):
            again = wait_until_sync(
                lambda: (r := row(config, job_id))["state"] == "running" and r, 60, "the job to be launched again"
            )
            assert again["pid"] != late.pid
            (gate / "go").touch()  # the late launcher goes on: it must find its launch given up
            assert not psutil.wait_procs([late], timeout=30)[1]
            done = wait_until_sync(lambda: ended(config, job_id), 60, "the job to end")
        assert done["state"] == "succeeded" and done["step"] == done["max_steps"] == 20
        assert len(starts(counted, "sft")) == 1, counted.read_text()
        assert "back in line: the bot restarted before this job's launch" in events(config, job_id)
    finally:
        fifo.close()
    assert launcher.GIVEN_UP.encode() in fifo.text  # what the late launcher said, in the log it was given


def test_export_whose_bot_died_mid_launch_is_followed_to_its_end_not_failed(
    scene: tuple[Config, Path, dict[str, str]], tmp_path: Path
) -> None:
    config, counted, env = scene
    first = start_serve(tmp_path, env)
    job_id = create(first, output_dir="output/exp", start=True)
    assert wait_until_sync(lambda: ended(config, job_id), 60, "training to end")["state"] == "succeeded"
    fifo = kill_mid_launch(
        first,
        config,
        config.log_dir / f"llm_export_{job_id}.log",
        lambda: requests.post(f"{first.url}/training/jobs/{job_id}/export", timeout=60),
        lambda r: r["export_state"] == "exporting",
        job_id,
        lambda: bool(starts(counted, "export")),
    )
    assert row(config, job_id)["export_pid"] is None
    found_again = "export found again after a restart of the bot"
    try:
        with serving(tmp_path, env):  # the export still runs (until told to end): the new bot must find it
            wait_until_sync(
                lambda: row(config, job_id)["export_state"] != "exporting" or found_again in events(config, job_id),
                60,
                "the new bot to look at the export",
            )
            (tmp_path / "gate" / "exported").touch()
            done = wait_until_sync(
                lambda: (r := row(config, job_id))["export_state"] != "exporting" and r, 60, "the export to end"
            )
        assert done["export_state"] == "exported" and (Path(done["export_dir"]) / "config.json").is_file()
        assert len(starts(counted, "export")) == 1, counted.read_text()
    finally:
        fifo.close()


def test_export_whose_launcher_came_after_the_restart_runs_once_not_failed(
    scene: tuple[Config, Path, dict[str, str]], tmp_path: Path
) -> None:
    config, counted, env = scene
    gate, env = tmp_path / "gate", env | {"LAUNCH_ONCE_HOLD": ".export."}
    first = start_serve(tmp_path, env)
    job_id = create(first, output_dir="output/exp-late", start=True)
    assert wait_until_sync(lambda: ended(config, job_id), 60, "training to end")["state"] == "succeeded"
    fifo = kill_mid_launch(
        first,
        config,
        config.log_dir / f"llm_export_{job_id}.log",
        lambda: requests.post(f"{first.url}/training/jobs/{job_id}/export", timeout=60),
        lambda r: r["export_state"] == "exporting",
        job_id,
        lambda: (gate / "arrived").exists(),
    )
    late = psutil.Process(int((gate / "arrived").read_text()))
    started_again = "export started again after a restart of the bot"
    try:
        with serving(tmp_path, env):
            wait_until_sync(
                lambda: (
                    row(config, job_id)["export_state"] != "exporting"
                    or any(e.startswith(started_again) for e in events(config, job_id))
                ),
                60,
                "the new bot to look at the export",
            )
            (gate / "go").touch()  # the late launcher goes on: it must find its launch given up
            assert not psutil.wait_procs([late], timeout=30)[1]
            (gate / "exported").touch()
            done = wait_until_sync(
                lambda: (r := row(config, job_id))["export_state"] != "exporting" and r, 60, "the export to end"
            )
        assert done["export_state"] == "exported" and (Path(done["export_dir"]) / "config.json").is_file()
        assert len(starts(counted, "export")) == 1, counted.read_text()
    finally:
        fifo.close()
    assert launcher.GIVEN_UP.encode() in fifo.text
