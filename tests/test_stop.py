"""A stop typed before the job's launcher has started swift (its first moments; seconds on a loaded machine) reaches
swift once it is there, as SIGINT, not as the SIGTERM of the grace period's end: the real runtime and local backend,
with a stand-in for a launcher that has not started its command yet (it ignores the group's SIGINT, as
runner/launcher.py does, and starts the trainer when told)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import psutil

from runner.config import Config
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
        run = Run(
            pid=launcher.pid,
            proc_start_time=psutil.Process(launcher.pid).create_time(),
            log_path=str(tmp_path / "job.log"),
        )
        job = await rt.store.create(
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
