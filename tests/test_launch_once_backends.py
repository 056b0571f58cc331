"""A job is launched once (issue 26, case 1), on the backends' side: a launch given up before its launcher came
starts nothing, warm or cold, and one claimed is found again; a Slurm job submitted by a bot that died before it
heard the Slurm id is adopted by the next bot, not submitted again. The `trainbot serve` killed mid-launch:
tests/test_launch_once.py."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import signal
from pathlib import Path

import psutil
import pytest
import requests

from runner import launcher, slurm_cli, slurm_cluster
from runner.backends import ProcessRef, new_launch_token
from runner.backends.local import LocalBackend
from runner.config import Config
from storage.models import JobState, Run
from tests.api_env import start_serve
from tests.launching import in_thread, leave_nothing, row, starts
from tests.slurm_bot import bot, job_when
from tests.slurm_bot import fake_config as slurm_fake_config
from tests.slurm_cluster import require_slurm
from tests.waiting import wait_until, wait_until_sync
from tests.warm_standin import ready_slot, sft, standin_backend

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
        assert not [j for j in await slurm_cluster.queue() if j.name.startswith(f"trainbot-{job_id}-")]
    finally:
        leave_nothing(tmp_path)
