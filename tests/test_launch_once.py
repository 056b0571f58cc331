"""A job is launched once, whatever moment `trainbot serve` dies at (issue 26, case 1): a real `trainbot serve`
(fake swift, real launcher, real SQLite, real Slurm) is SIGKILLed mid-launch and started again.

The moment is made exact, with real parts only:
- the job's log is a FIFO (`FifoLog`): the bot, which opens the log between recording the launch and starting the
  launcher, waits there until the test opens the FIFO;
- the test holds the store's write lock (`write_lock`) while it lets the bot on: the bot starts the launcher, then
  waits for the lock to record the launcher's pid, and is killed there;
- where the launcher must be caught before it has done anything, a `sitecustomize` on the PYTHONPATH (written into
  the test's folder) holds the first `runner/launcher.py` of a training (LAUNCH_ONCE_HOLD=.train.) or an export
  (.export.: its exit file's name says which) until the test lets it go.
FAKE_SWIFT_STARTS counts every trainer and export that ever started.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import select
import shutil
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from runner import launcher, slurm_cli
from runner.backends import ProcessRef, new_launch_token
from runner.backends.local import LocalBackend
from runner.config import Config
from storage.models import JobState, Run
from tests.api_env import Served, serving, start_serve
from tests.slack_env import fake_config
from tests.slurm_bot import bot, job_when
from tests.slurm_bot import fake_config as slurm_fake_config
from tests.slurm_cluster import require_slurm
from tests.test_warm import ready_slot, sft, standin_backend
from tests.waiting import wait_until, wait_until_sync

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


class FifoLog:
    """A job's log as a FIFO: the bot's open() of it waits until `let_on`; what comes through is kept."""

    def __init__(self, path: Path) -> None:
        self.path, self.text = path, b""
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        self._fds: list[int] = []
        self._thread: threading.Thread | None = None

    def let_on(self) -> None:
        read = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._fds = [read, os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)]  # ours: no EOF while the bot comes
        self._thread = threading.Thread(target=self._drain, args=(read,), daemon=True)
        self._thread.start()

    def _drain(self, fd: int) -> None:
        while True:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # closed by close()
                return
            if not data:
                return  # every writer gone: the launcher and what it started too
            self.text += data

    def make_plain(self) -> None:
        """A plain file where the FIFO was, for the next bot; what is still coming through the FIFO is kept here."""
        self.path.unlink()
        self.path.touch()

    def close(self) -> None:
        if self._fds:
            os.close(self._fds.pop())  # our write end: EOF once the launcher's are closed too
        if self._thread is not None:
            self._thread.join(30)
        for fd in self._fds:
            os.close(fd)
        self._fds = []


@contextlib.contextmanager
def write_lock(db: Path) -> Iterator[None]:
    """The store's write lock, held by the test: a bot's next write waits (its busy timeout is 10 s)."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=10)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def row(config: Config, job_id: str) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(config.db_path, timeout=10)) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        assert found is not None, job_id
        return dict(found)


def events(config: Config, job_id: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(config.db_path, timeout=10)) as conn:
        return [r[0] for r in conn.execute("SELECT message FROM events WHERE job_id = ? ORDER BY id", (job_id,))]


def starts(path: Path, what: str) -> list[str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for line in lines if line.startswith(what + " ")]


def in_thread(call: Callable[[], object]) -> None:
    """A request the bot dies answering."""

    def run() -> None:
        with contextlib.suppress(requests.RequestException):
            call()

    threading.Thread(target=run, daemon=True).start()


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


def leave_nothing(root: Path) -> None:
    """Launchers and fakes started for `root` that a failed test may have left: killed."""
    mine = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and str(root) in " ".join(proc.info["cmdline"] or ()):
                mine.append(proc)
    for proc in mine:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(mine, timeout=10)


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


# ---- the backend's side, with a launcher kept warm (runner/warm.py) ------------------------------------------


async def test_a_launch_given_up_first_starts_nothing_warm_or_cold_and_one_claimed_is_found(tmp_path: Path) -> None:
    async with standin_backend(tmp_path, "") as (b, config):
        for attempt in ("cold", "warm"):  # the first launch starts a warm process for the next
            if attempt == "warm":
                await ready_slot(b)
            ref = ProcessRef(attempt, "train", Run(launch_token=new_launch_token()))
            assert await LocalBackend(tmp_path / "exits").reclaim(ref) is None  # a restarted bot's look came first
            log = tmp_path / f"{attempt}.log"
            launched = await b.launch(ref, sft(config), log_path=log, gpus=("cpu",))
            await wait_until(functools.partial(_gone, launched.pid), 30, "the launcher to leave")
            assert "\njob {" not in log.read_text() and launcher.GIVEN_UP in log.read_text(), log.read_text()
        await ready_slot(b)
        ref = ProcessRef("found", "train", Run(launch_token=new_launch_token()))
        launched = await b.launch(ref, sft(config, "--forever"), log_path=tmp_path / "found.log", gpus=("cpu",))
        await wait_until(lambda: _says(tmp_path / "found.log", "\njob {"), 30, "the job to run")
        found = await LocalBackend(tmp_path / "exits").reclaim(ref)  # a restarted bot finds the warm launcher
        assert found is not None and (found.pid, found.proc_start_time) == (launched.pid, launched.proc_start_time)
        await b.kill(ProcessRef("found", "train", launched.run(tmp_path / "found.log", ref.run.launch_token)))


async def _gone(pid: int | None) -> bool:
    try:
        return psutil.Process(pid or -1).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _says(path: Path, text: str) -> bool:
    return text in path.read_text()


# ---- Slurm ------------------------------------------------------------------------------------------------

# sbatch that submits, then keeps the job id from the bot until the test lets it go: the bot dies before it hears it
HUSHED_SBATCH = """#!/bin/sh
out=$({sbatch} "$@") || exit $?
echo "$out" > "$SBATCH_GATE/submitted"
end=$(( $(date +%s) + 120 ))
while [ ! -e "$SBATCH_GATE/go" ] && [ "$(date +%s)" -lt "$end" ]; do sleep 0.05; done
echo "$out"
"""


def submit_and_die(tmp_path: Path, config: Config, env: dict[str, str], gate: Path) -> tuple[str, str]:
    """A `trainbot serve` asked to start a job, SIGKILLed once sbatch has submitted it (and before it has said the
    Slurm id): the job's id and its Slurm job's."""
    first = start_serve(tmp_path, env)
    try:
        reply = requests.post(
            f"{first.url}/training/llm/jobs", json={"gpu_id": "cpu", "output_dir": "output/s"}, timeout=30
        )
        assert reply.status_code == 201, reply.text
        job_id: str = reply.json()["job_id"]
        in_thread(lambda: requests.post(f"{first.url}/training/jobs/{job_id}/start", timeout=60))
        slurm_id: str = wait_until_sync(
            lambda: (gate / "submitted").exists() and (gate / "submitted").read_text().strip(), 30, "sbatch to submit"
        )
    finally:
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(30)
        (gate / "go").touch()
    return job_id, slurm_id


@pytest.mark.slurm
async def test_slurm_job_submitted_by_a_bot_that_died_is_adopted_not_submitted_again(tmp_path: Path) -> None:
    require_slurm()
    counted = tmp_path / "starts.txt"
    config = slurm_fake_config(tmp_path, steps=5, env={"FAKE_SWIFT_STARTS": str(counted)})
    gate, hushed = tmp_path / "sbatch-gate", tmp_path / "hushed" / "sbatch"
    gate.mkdir()
    hushed.parent.mkdir()
    hushed.write_text(HUSHED_SBATCH.format(sbatch=shutil.which("sbatch")))
    hushed.chmod(0o755)
    env = {"PATH": f"{hushed.parent}{os.pathsep}{os.environ['PATH']}", "SBATCH_GATE": str(gate)}
    try:
        job_id, slurm_id = await asyncio.to_thread(submit_and_die, tmp_path, config, env, gate)
        assert row(config, job_id)["backend_job_id"] is None  # the bot died before it heard the Slurm id

        async def completed() -> bool:
            sj = await slurm_cli.show_job(slurm_id)
            return sj is not None and sj.state == "COMPLETED"

        await wait_until(completed, 60, f"Slurm job {slurm_id} to complete with no bot around")
        async with bot(config) as second:
            job = await job_when(second, job_id, lambda j: j.state.is_terminal, "ends", within=60)
        assert job.state is JobState.SUCCEEDED and job.train_run.backend_job_id == slurm_id
        assert len(starts(counted, "sft")) == 1, counted.read_text()  # Slurm ran it once
        assert not [j for j in await slurm_cli.queue() if j.name.startswith(f"trainbot-{job_id}-")]
    finally:
        leave_nothing(tmp_path)
