"""What people are told about a Slurm job (issue 17), through the real handlers and supervisor on the real
single-node Slurm with 2 fake GPUs and tests/fake_swift.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.chat.handlers import Handlers
from bot.words import failures as failure_words
from bot.words import notices as notice_words
from bot.words import texts
from bot.words.events import event_text
from runner.access import Caller
from storage.actors import User
from storage.failure_facts import SlurmRefused
from storage.models import JobState
from storage.notices import JobQueued
from tests.slurm_bot import bot, fake_config, job_when, request, slurm_job
from tests.slurm_cluster import require_slurm, wait_gpus_free

slurm = pytest.mark.slurm
CONSOLE = Caller(console=True)


@pytest.fixture(scope="session")
def node() -> str:
    return require_slurm()


@slurm
async def test_refused_job_is_answered_as_not_started_with_slurms_reason_first(node: str, tmp_path: Path) -> None:
    config = fake_config(tmp_path, slurm='partition = "nosuch"\n')
    async with bot(config) as rt:
        reply = await Handlers(rt).handle("llm gpu=0 out=output/refused", CONSOLE)
        # the loop hands it to Slurm next (the job is named after its output folder's last part)
        assert reply.ok and reply.text.startswith(f"Job {reply.job_id} “refused” queued")
        job = await job_when(rt, reply.job_id or "", lambda j: j.state.is_terminal, "is refused")
        assert job.state is JobState.FAILED
        assert job.failure and job.failure.reason == SlurmRefused(
            "refused", "invalid partition specified: nosuch", job.failure.reason.command
        )
        assert failure_words.summary(job.failure) == "Slurm refused the job: invalid partition specified: nosuch"
        failed = [n for n in await rt.store.notices(job.id) if n.topic == "job_failed"]
        told = notice_words.notice_text(failed[0])
        assert told.startswith(f"❌ job {job.id} failed: Slurm refused the job: invalid partition"), told
        assert "💡 sinfo lists the cluster's partitions" in told and "[slurm] partition" in told
        # the command line that failed is in the job's details, not in what people read first
        events = [event_text(e.facts) for e in await rt.store.events(job.id)]
        assert any("sbatch --parsable" in e and "--partition=nosuch" in e for e in events), events
        assert "sbatch --parsable" not in told


@slurm
async def test_submitted_job_says_its_slurm_job_and_reason_not_a_place_in_line(node: str, tmp_path: Path) -> None:
    config = fake_config(tmp_path, slurm='extra_args = ["--hold"]\n')
    async with bot(config) as rt:
        reply = await Handlers(rt).handle("llm gpu=0 out=output/held", CONSOLE)
        assert reply.ok and reply.text.startswith(f"Job {reply.job_id} “held” queued"), reply.text
        job = await job_when(rt, reply.job_id or "", lambda j: j.train_run.backend_job_id, "is handed to Slurm")
        slurm_id = job.train_run.backend_job_id
        assert job.state is JobState.QUEUED
        queued = [n for n in await rt.store.notices(job.id) if n.topic == "job_queued"]
        facts = queued[0].facts
        assert isinstance(facts, JobQueued) and facts.backend == "slurm" and facts.backend_job_id == slurm_id
        words = notice_words.notice_text(queued[0])
        assert words.startswith(f"⏳ job {job.id} submitted to Slurm as job {slurm_id}; Slurm: held")
        assert "in line" not in words and "None" not in words


@slurm
async def test_gpu_numbers_on_slurm_count_a_nodes_gpus(node: str, tmp_path: Path) -> None:
    config = fake_config(tmp_path, slurm='extra_args = ["--hold"]\n')
    async with bot(config) as rt:
        too_many = await Handlers(rt).handle("llm gpu=0,1,2 out=output/three", CONSOLE)
        assert not too_many.ok and "on this machine" not in too_many.text
        assert too_many.text == (
            "3 GPUs on one node asked for, but the Slurm cluster's nodes have at most 2 GPUs "
            "each (gpus lists them). Try gpu=0,1."
        )  # the console's plain words
        assert await rt.store.list_jobs() == []
        seven = await Handlers(rt).handle("llm gpu=7 out=output/seven", CONSOLE)  # one GPU: Slurm picks which
        assert seven.ok, seven.text
        job = await job_when(rt, seven.job_id or "", lambda j: j.train_run.backend_job_id, "is handed to Slurm")
        assert (await slurm_job(job.train_run.backend_job_id)).raw["TresPerNode"] == "gres:gpu:1"


@slurm
async def test_progress_of_a_job_whose_run_folder_appears_at_its_very_start(node: str, tmp_path: Path) -> None:
    # The bot looks at Slurm every 3 s, so it sees the job running (or already ended) well after the trainer
    # made its run folder: the folder must be found all the same, from Slurm's own start time.
    config = fake_config(tmp_path, steps=10, env={"FAKE_START_S": "0"}, poll_s=3)
    await wait_gpus_free()
    async with bot(config) as rt:
        job = await rt.supervisor.submit(request(config, "early"))
        job = await job_when(rt, job.id, lambda j: j.state.is_terminal, "ends", within=60)
        assert job.state is JobState.SUCCEEDED, job.failure
        assert job.run_dir and Path(job.run_dir).parent == Path(job.output_dir)
        logged = [json.loads(line) for line in (Path(job.run_dir) / "logging.jsonl").read_text().splitlines()]
        steps = [int(str(r["global_step/max_steps"]).split("/")[0]) for r in logged if "loss" in r]
        assert steps == list(range(1, 11))
        assert job.progress.step == job.progress.max_steps == 10 and job.progress.last_checkpoint
        assert texts.progress_line(job)  # the user sees where it got to
        assert job.started_at and job.started_at <= Path(job.run_dir).stat().st_ctime


@slurm
async def test_a_stop_from_trainbot_is_cancelled_in_slurms_records_not_failed(node: str, tmp_path: Path) -> None:
    config = fake_config(tmp_path, steps=300)
    await wait_gpus_free()
    async with bot(config) as rt:
        job = await rt.supervisor.submit(request(config, "stopped"))
        await job_when(rt, job.id, lambda j: (j.progress.step or 0) >= 3, "makes progress")
        await rt.supervisor.stop(job.id, by="U1")
        job = await job_when(rt, job.id, lambda j: j.state.is_terminal, "ends", within=60)
        assert job.state is JobState.STOPPED and job.stopped_by == User("U1")
        assert "KeyboardInterrupt" in Path(job.train_run.log_path or "").read_text()  # the trainer got its SIGINT
        assert (await slurm_job(job.train_run.backend_job_id)).state == "CANCELLED"
