"""The Slurm backend through the real supervisor, on a real single-node Slurm with 2 fake GPUs
(`scripts/slurm_up.sh up`, which `make test` runs first).

`swift` tests run the real `swift sft` / `swift export` on the tiny local model; the others use
tests/fake_swift.py (the same files on disk, in seconds) where real training would only make them slow.
Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from bot.words import failures as failure_words
from bot.words.cluster import render_gpu_nodes
from bot.words.format import SLACK
from bot.words.waiting import waiting_words
from runner import slurm_cli, slurm_cluster
from runner.backends import ProcessRef, RunStatus, new_launch_token
from runner.backends.slurm import SlurmBackend
from runner.child_env import BOT_SECRETS
from runner.command import SwiftCommand
from storage.actors import User
from storage.failure_facts import SlurmRefused
from storage.models import ExportState, Job, JobState, Run
from storage.waiting import SlurmPending, Submitted
from tests.slurm_bot import STUBBORN_BIN, bot, fake_config, job_when, real_config, request, slurm_job, summary_line
from tests.slurm_cluster import require_slurm, wait_gpus_free
from tests.waiting import wait_until

slurm = pytest.mark.slurm
SECRETS = (*BOT_SECRETS, "TB_OWN_SECRET")


def words(job: Job) -> str:
    """Why the job waits, in the words every front end shows ("" when it does not say)."""
    return waiting_words(job.queue_reason) if job.queue_reason else ""


@pytest.fixture(scope="session")
def node() -> str:
    return require_slurm()


# ---- real swift ------------------------------------------------------------------------------------------


@slurm
@pytest.mark.swift
async def test_real_swift_queues_runs_with_progress_succeeds_and_exports(
    node: str, tiny_llm: dict[str, object], tmp_path: Path
) -> None:
    config = real_config(tmp_path, tiny_llm)
    await wait_gpus_free()
    async with bot(config) as rt:
        job = await rt.supervisor.submit(request(config, "real"))
        assert job.state is JobState.QUEUED  # answered at once: the loop hands it to Slurm
        job = await job_when(rt, job.id, lambda j: j.train_run.backend_job_id, "is handed to Slurm")
        assert job.train_run.pid is None
        if job.state is JobState.QUEUED:  # handed over; the first poll may already show Slurm's own reason
            assert job.queue_reason == Submitted("slurm", job.train_run.backend_job_id or "") or isinstance(
                job.queue_reason, SlurmPending
            )
        else:  # an idle Slurm started it before this poll saw it queued: it no longer waits, so it says no reason
            assert job.state is JobState.RUNNING and job.queue_reason is None, job
        sj = await slurm_job(job.train_run.backend_job_id)
        assert sj.raw["JobName"] == f"trainbot-{job.id}-train-{job.train_run.launch_token}"
        assert sj.stdout_path == Path(job.train_run.log_path or "")
        assert sj.raw["TresPerNode"] == "gres:gpu:1"

        job = await job_when(
            rt, job.id, lambda j: j.state not in (JobState.QUEUED, JobState.STARTING), "leaves the queue"
        )
        assert job.state is JobState.RUNNING and job.host == f"slurm:{await slurm_cluster.cluster_name()}"
        seen: set[int] = set()

        def note_step(j: Job) -> bool:
            if j.state is JobState.RUNNING and j.progress.step is not None:
                seen.add(j.progress.step)
            return j.state.is_terminal

        job = await job_when(rt, job.id, note_step, "ends", within=150)
        assert job.state is JobState.SUCCEEDED, (job.failure, Path(job.train_run.log_path or "").read_text()[-2000:])
        p = job.progress
        assert p.max_steps and p.step == p.max_steps and len({s for s in seen if s < p.max_steps}) >= 2, seen
        assert p.last_checkpoint and Path(p.last_checkpoint).is_dir() and job.exit_code == 0
        assert (await slurm_job(job.train_run.backend_job_id)).state == "COMPLETED"

        await rt.supervisor.export(job.id, by="U1")
        job = await job_when(rt, job.id, lambda j: j.export_state is not ExportState.EXPORTING, "exported", 150)
        assert job.export_state is ExportState.EXPORTED, Path(job.export_run.log_path or "").read_text()[-2000:]
        assert (Path(job.export_dir or "") / "model.safetensors").is_file()
        ex = await slurm_job(job.export_run.backend_job_id)  # its own Slurm job, without a GPU
        assert ex.raw["JobName"] == f"trainbot-{job.id}-export-{job.export_run.launch_token}"
        assert "gpu" not in ex.raw.get("TresPerNode", "")
        assert ex.job_id != job.train_run.backend_job_id and ex.state == "COMPLETED"
        topics = [n.topic for n in await rt.store.notices(job.id)]
        assert topics[:3] == ["job_created", "job_queued", "job_started"], topics
        assert topics[-3:] == ["job_succeeded", "export_started", "export_succeeded"], topics


@slurm
@pytest.mark.swift
async def test_real_swift_stop_reaches_the_trainer_and_ends_stopped(
    node: str, tiny_llm: dict[str, object], tmp_path: Path
) -> None:
    config = real_config(tmp_path, tiny_llm, num_train_epochs=30)
    await wait_gpus_free()
    async with bot(config) as rt:
        job = await rt.supervisor.submit(request(config, "stop", ("1",)))
        await job_when(rt, job.id, lambda j: j.progress.last_checkpoint, "saves a checkpoint", within=120)
        assert (await rt.supervisor.stop(job.id, by="U1")).state is JobState.STOPPING
        job = await job_when(rt, job.id, lambda j: j.state.is_terminal, "ends", within=60)
        assert job.state is JobState.STOPPED and job.stopped_by == User("U1")
        assert job.progress.step and job.progress.max_steps and job.progress.step < job.progress.max_steps
        # SIGINT went to swift's trainer only (not the `swift` wrapper, which would have SIGKILLed it): the trainer
        # wrote its summary, and the wrapper exited 254 as it does when its child was interrupted; then the batch
        # shell cancelled the job, so Slurm's records say CANCELLED rather than FAILED
        log_text = Path(job.train_run.log_path or "").read_text()
        assert "KeyboardInterrupt" in log_text and "[trainbot] stopped: the trainer exited 254" in log_text
        assert summary_line(job).get("last_model_checkpoint") == job.progress.last_checkpoint
        assert (await slurm_job(job.train_run.backend_job_id)).state == "CANCELLED"


# ---- the fake swift: queueing, stop escalation, restart, environment ---------------------------------------


@slurm
async def test_third_one_gpu_job_waits_for_slurm_and_runs_when_a_gpu_frees(node: str, tmp_path: Path) -> None:
    config = fake_config(tmp_path, steps=30)
    await wait_gpus_free()
    async with bot(config) as rt:
        a, b, c = [
            await rt.supervisor.submit(request(config, name, (gpu,)))
            for name, gpu in (("a", "0"), ("b", "1"), ("c", "0"))
        ]
        c = await job_when(
            rt,
            c.id,
            lambda j: words(j) == "Slurm: waiting for a free GPU (Resources)",
            "waits for Slurm's Resources",
            within=30,
        )
        a, b = [await job_when(rt, first.id, lambda j: j.state is JobState.RUNNING, "runs") for first in (a, b)]
        c = await rt.store.require(c.id)
        assert c.state is JobState.QUEUED and words(c) == "Slurm: waiting for a free GPU (Resources)"
        table = render_gpu_nodes(await SlurmBackend(config).cluster_gpus(), SLACK)
        assert f"*{node}*" in table and "GPU 2/2 in use by `" in table and f"waiting: `{c.id}` (1 GPU)" in table, table

        c = await job_when(rt, c.id, lambda j: j.state not in (JobState.QUEUED, JobState.STARTING), "starts", 60)
        assert c.state is JobState.RUNNING and c.queue_reason is None
        first_ends = [(await slurm_job(j.train_run.backend_job_id)).end_time for j in (a, b)]
        # c started once a or b had ended: a GPU freed
        assert min(t for t in first_ends if t) <= (await slurm_job(c.train_run.backend_job_id)).start_time
        ended = [await job_when(rt, j.id, lambda j: j.state.is_terminal, "ends") for j in (a, b, c)]
        assert [j.state for j in ended] == [JobState.SUCCEEDED] * 3
        devices = [
            next(
                line
                for line in Path(j.train_run.log_path or "").read_text().splitlines()
                if line.startswith("CUDA_VISIBLE_DEVICES=")
            )
            for j in ended
        ]
        assert sorted(devices[:2]) == ["CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES=1"]  # Slurm picked them
        assert devices[2] in devices[:2]


@slurm
async def test_stop_escalates_to_scancel_when_the_trainer_ignores_sigint(node: str, tmp_path: Path) -> None:
    config = fake_config(tmp_path, script=STUBBORN_BIN, stop_grace_s=1)
    await wait_gpus_free()
    async with bot(config) as rt:
        job = await rt.supervisor.submit(request(config, "stubborn"))
        job = await job_when(rt, job.id, lambda j: j.state is JobState.RUNNING, "runs")
        await wait_until(lambda: slurm_cli.running_steps(job.train_run.backend_job_id or ""), 30, "its srun step")
        await rt.supervisor.stop(job.id, by="U2")
        job = await job_when(rt, job.id, lambda j: j.state.is_terminal, "ends", within=30)
        assert job.state is JobState.STOPPED and job.stopped_by == User("U2")
        assert "got SIGINT, carrying on" in Path(job.train_run.log_path or "").read_text()
        assert (await slurm_job(job.train_run.backend_job_id)).state == "CANCELLED"


@slurm
async def test_restarted_bot_follows_a_running_slurm_job_to_its_end(node: str, tmp_path: Path) -> None:
    config = fake_config(tmp_path, steps=40)
    await wait_gpus_free()
    async with bot(config, cancel_on_exit=False) as first:
        job = await first.supervisor.submit(request(config, "restart"))
        job = await job_when(first, job.id, lambda j: j.progress.step, "makes progress")
    # the bot is gone; a new backend object knows the job from its Slurm id alone
    ref = ProcessRef(job.id, "train", Run(backend_job_id=job.train_run.backend_job_id))
    status = await SlurmBackend(config).status(ref)
    assert status.alive and status.pending_reason is None and status.started_at  # Slurm's StartTime
    async with bot(config) as second:
        job = await job_when(second, job.id, lambda j: j.state.is_terminal, "ends", within=60)
        assert job.state is JobState.SUCCEEDED and job.progress.step == 40
        assert summary_line(job).get("global_step") == 40


@slurm
async def test_held_job_shows_slurm_reason_and_stop_leaves_slurm_queue(node: str, tmp_path: Path) -> None:
    config = fake_config(tmp_path, slurm='extra_args = ["--hold"]\n')
    async with bot(config) as rt:
        job = await rt.supervisor.submit(request(config, "held"))
        job = await job_when(rt, job.id, lambda j: "JobHeldUser" in words(j), "shows it is held")
        assert words(job) == "Slurm: held by its owner (scontrol release <slurm id> lets it go) (JobHeldUser)"
        job = await rt.supervisor.stop(job.id, by="U1")
        assert job.state is JobState.STOPPED
        assert (await slurm_job(job.train_run.backend_job_id)).state == "CANCELLED"


@slurm
async def test_trainer_failure_and_refused_submission(node: str, tmp_path: Path) -> None:
    config = fake_config(tmp_path, steps=3, env={"FAKE_EXIT": "3"})
    await wait_gpus_free()
    async with bot(config) as rt:
        job = await rt.supervisor.submit(request(config, "fails"))
        job = await job_when(rt, job.id, lambda j: j.state.is_terminal, "ends")
        assert job.state is JobState.FAILED and job.exit_code == 3 and job.failure
        assert "fake failure" in failure_words.summary(job.failure)
    config = fake_config(tmp_path / "2", slurm='partition = "no-such-partition"\n')
    async with bot(config) as rt:
        job = await rt.supervisor.submit(request(config, "refused"))
        job = await job_when(rt, job.id, lambda j: j.state.is_terminal, "is refused")
        assert job.state is JobState.FAILED and job.failure and isinstance(job.failure.reason, SlurmRefused)
        assert failure_words.summary(job.failure).startswith("Slurm refused the job: invalid partition")


@slurm
@pytest.mark.parametrize("purpose", ["train", "export"])
async def test_job_environment_has_none_of_the_bots_secrets(
    node: str, tmp_path: Path, purpose: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SECRETS:
        monkeypatch.setenv(name, f"secret-{name}")
    monkeypatch.setenv("TB_INHERITED", "from the bot")
    monkeypatch.setenv("HF_TOKEN", "hf-for-the-job")
    config = fake_config(tmp_path).changed(runner={"scrub_env": ("TB_OWN_SECRET",)})
    backend, log = SlurmBackend(config), tmp_path / "logs" / "env.log"
    ref = ProcessRef("envjob", purpose)
    launched = await backend.launch(ref, SwiftCommand(("env",), {"TB_VALUE": "a b,c"}), log_path=log, gpus=("cpu",))
    ref = ProcessRef("envjob", purpose, Run(backend_job_id=launched.backend_job_id))
    status = await wait_until(lambda: _ended(backend, ref), 30, "the env job to end", every=0.1)
    assert (status.alive, status.returncode, status.cause) == (False, 0, None)
    lines = log.read_text().splitlines()
    assert lines[0].startswith("[trainbot] ")
    assert lines[0].endswith(f"job envjob {purpose} (Slurm): TB_VALUE='a b,c' env")
    assert {
        "TB_VALUE=a b,c",
        "TB_INHERITED=from the bot",
        "PYTHONUNBUFFERED=1",
        "CUDA_VISIBLE_DEVICES=",
        "HF_TOKEN=hf-for-the-job",
    } <= set(lines)
    assert not [line for line in lines if "secret-" in line or line.split("=")[0] in SECRETS]
    assert "SLACK_BOT_TOKEN" in os.environ  # the bot keeps its own


@slurm
async def test_job_submitted_before_a_crash_is_found_by_its_launch_token(node: str, tmp_path: Path) -> None:
    config = fake_config(tmp_path, slurm='extra_args = ["--hold"]\n')
    ref = ProcessRef("twice", "train", Run(launch_token=new_launch_token()))
    cmd, log = SwiftCommand(("true",)), tmp_path / "logs" / "twice.log"
    first = await SlurmBackend(config).launch(ref, cmd, log_path=log, gpus=("0",))
    try:  # the bot died before it recorded the Slurm id: a restarted one finds the job by its launch's token
        again = await SlurmBackend(config).reclaim(ref)
        assert again is not None and again.backend_job_id == first.backend_job_id and again.host == first.host
        other = ProcessRef("twice", "train", Run(launch_token=new_launch_token()))
        assert await SlurmBackend(config).reclaim(other) is None  # another launch of the job: Slurm never had it
    finally:
        await slurm_cli.cancel(first.backend_job_id or "")


async def _ended(backend: SlurmBackend, ref: ProcessRef) -> RunStatus | None:
    status = await backend.status(ref)
    return None if status.alive else status


@slurm
async def test_unknown_or_forgotten_job_is_settled_from_the_logs(node: str, tmp_path: Path) -> None:
    backend = SlurmBackend(fake_config(tmp_path))
    gone = ProcessRef("gone", "train", Run(backend_job_id="987654321"))
    assert await backend.status(gone) == RunStatus(alive=False)
    assert await backend.status(ProcessRef("never", "train")) == RunStatus(alive=False)
    assert not await backend.interrupt(gone)
    assert backend.own_pids([ProcessRef("x", "train", Run(backend_job_id="1"))]) == set()


@slurm
async def test_a_slow_sbatch_for_an_export_holds_up_no_tick(
    node: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export is marked under the supervisor's lock and submitted outside it: while `sbatch` takes its time,
    the tick (every other job's progress, every other command) goes on."""
    config = fake_config(tmp_path, steps=3)
    await wait_gpus_free()
    async with bot(config) as rt:
        job = await rt.supervisor.submit(request(config, "slow-sbatch"))
        job = await job_when(rt, job.id, lambda j: j.state.is_terminal, "ends", within=90)
        assert job.state is JobState.SUCCEEDED, job.failure
        slow = tmp_path / "slow-bin"
        slow.mkdir()
        (slow / "sbatch").write_text(f'#!/bin/sh\nsleep 4\nexec {shutil.which("sbatch")} "$@"\n')
        (slow / "sbatch").chmod(0o755)
        monkeypatch.setenv("PATH", f"{slow}:{os.environ['PATH']}")
        export = asyncio.create_task(rt.supervisor.export(job.id, by="U1"))
        await job_when(rt, job.id, lambda j: j.export_state is ExportState.EXPORTING, "marked exporting", 5)
        await asyncio.wait_for(rt.supervisor.tick(), 2)  # with the lock held through sbatch: 4 s
        assert not export.done()  # sbatch was still at it
        job = await export
        assert job.export_run.backend_job_id and job.export_state is ExportState.EXPORTING
        job = await job_when(rt, job.id, lambda j: j.export_state is not ExportState.EXPORTING, "exported", 60)
        assert job.export_state is ExportState.EXPORTED, Path(job.export_run.log_path or "").read_text()[-2000:]
