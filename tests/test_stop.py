"""Stops on the real runtime and local backend.

A stop typed before the job's launcher has started swift (its first moments; seconds on a loaded machine) reaches
swift once it is there, as SIGINT, not as the SIGTERM of the grace period's end: the real runtime and local backend,
with a stand-in for a launcher that has not started its command yet (it ignores the group's SIGINT, as
runner/launcher.py does, and starts the trainer when told)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

import psutil

from runner.config import Config
from runner.runtime import Runtime
from storage.actors import User
from storage.jobs import JobStore
from storage.models import Job, JobState, Kind, Run
from tests.conftest import OpenRuntime
from tests.waiting import wait_until

TRAINER = """import sys, time
try:
    time.sleep(60)
except KeyboardInterrupt:
    open(sys.argv[1], "w").close()
"""
LAUNCHER = f"""import os, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
trainer = subprocess.Popen([sys.executable, "-c", {TRAINER!r}, sys.argv[2]],
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
sys.exit(trainer.wait())
"""


async def test_a_stop_before_swift_has_started_reaches_it_once_it_has(
    config: Config, tmp_path: Path, open_runtime: OpenRuntime
) -> None:
    go, interrupted = tmp_path / "go", tmp_path / "interrupted"
    launcher = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LAUNCHER, str(go), str(interrupted), start_new_session=True
    )
    try:
        rt = await open_runtime(config)
        job = await _running_job(rt.store, launcher.pid, tmp_path)
        assert (await rt.supervisor.stop(job.id, by="U1")).state is JobState.STOPPING
        assert psutil.Process(launcher.pid).children() == []  # nothing had the signal: swift was not there yet
        go.touch()

        async def reached() -> bool:
            return interrupted.exists()

        await wait_until(reached, 20, "swift to get the SIGINT once it is there")

        async def stopped() -> Job | None:
            ended = await rt.store.require(job.id)
            return ended if ended.state.is_terminal else None

        assert (await wait_until(stopped, 20, "the job to end")).state is JobState.STOPPED
    finally:
        with contextlib.suppress(ProcessLookupError):
            launcher.kill()
        await launcher.wait()


# a trainer (its command names swift's sft script, as the real one's does) that ignores SIGINT and SIGTERM, and writes
# down each it gets: only the SIGKILL of the stop's last deadline ends it
STUBBORN = """import signal, sys, time
def note(sig, frame):
    with open(sys.argv[1], "a") as f:
        f.write(f"{signal.Signals(sig).name} {time.time()}\\n")
signal.signal(signal.SIGINT, note)
signal.signal(signal.SIGTERM, note)
open(sys.argv[1], "a").close()  # ready: its handlers are in place
while True:
    time.sleep(0.05)
"""


async def _exists(path: Path) -> bool:
    return path.exists()


def signals(path: Path) -> list[tuple[str, float]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [(name, float(at)) for name, at in (line.split() for line in lines)]


async def test_a_bot_restarted_mid_stop_escalates_on_the_stops_own_deadlines(
    config: Config, tmp_path: Path, open_runtime: OpenRuntime
) -> None:
    config = config.changed(runner={"stop_grace_seconds": 3.0, "term_grace_seconds": 3.0, "progress_poll_seconds": 0.1})
    got = tmp_path / "signals"
    trainer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STUBBORN, str(got), "swift/cli/sft.py", start_new_session=True
    )
    try:
        await wait_until(lambda: _exists(got), 20, "the stand-in trainer to be ready")
        first = await Runtime.open(config)
        await first.start()
        job = await _running_job(first.store, trainer.pid, tmp_path)
        asked = time.time()
        assert (await first.supervisor.stop(job.id, by="U1")).state is JobState.STOPPING
        term_at, kill_at = asked + config.stop_grace_s, asked + config.stop_grace_s + config.term_grace_s

        async def interrupted() -> bool:
            return [name for name, _ in signals(got)] == ["SIGINT"]

        await wait_until(interrupted, 10, "the stop's SIGINT")
        await first.close()  # the bot goes away mid-stop, before the SIGTERM's deadline

        async def past_term_deadline() -> bool:
            return time.time() > term_at + 0.5

        await wait_until(past_term_deadline, 10, "the SIGTERM's deadline to pass with no bot", every=0.05)
        back = time.time()
        second = await open_runtime(config)  # the restarted bot: SIGTERM is due already, SIGKILL on schedule

        async def terminated() -> list[tuple[str, float]]:
            return [s for s in signals(got) if s[0] == "SIGTERM"]

        first_term = (await wait_until(terminated, 10, "the SIGTERM"))[0][1]
        assert first_term - back < 1.5, f"SIGTERM {first_term - back:.1f}s after the restart, not at once"

        async def ended() -> Job | None:
            done = await second.store.require(job.id)
            return done if done.state.is_terminal else None

        done = await wait_until(ended, 15, "the job to end")
        assert done.state is JobState.STOPPED and done.stopped_by == User("U1")
        assert await trainer.wait() == -signal.SIGKILL
        assert kill_at - 0.5 <= (done.finished_at or 0) < kill_at + 2.0  # killed at its deadline, not later
        assert [name for name, _ in signals(got)].count("SIGINT") == 1  # it had reached swift: not sent again
    finally:
        with contextlib.suppress(ProcessLookupError):
            trainer.kill()
        await trainer.wait()


async def _running_job(store: JobStore, pid: int, tmp_path: Path) -> Job:
    """A running job whose process is `pid` (a stand-in started by the test), as a launch would record it."""
    run = Run(pid=pid, proc_start_time=psutil.Process(pid).create_time(), log_path=str(tmp_path / "job.log"))
    return await store.create(
        Job(
            id="",
            kind=Kind.LLM,
            state=JobState.RUNNING,
            output_dir=str(tmp_path / "o"),
            gpus=("cpu",),
            argv=("swift", "sft"),
            train_run=run,
        )
    )
