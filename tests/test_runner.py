"""The runner end to end with the real `swift` CLI on the tiny local model (CPU): run, progress, stop, export,
failures, GPU queueing. Slow by nature: marked `swift`."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from bot.words import failures as failure_words
from bot.words import refusals
from runner import leases
from runner.config import Config
from runner.errors import GpuMissing
from runner.runtime import Runtime
from runner.supervisor import JobRequest
from storage.actors import User
from storage.models import ExportState, Job, JobState, Kind
from storage.notices import ExportStarted, JobFailed, JobQueued
from storage.waiting import GpusBusy
from tests.conftest import MakeConfig, OpenRuntime
from tests.waiting import wait_until

pytestmark = pytest.mark.swift


def request(config: Config, out: str = "output/x", gpus: tuple[str, ...] = ("cpu",)) -> JobRequest:
    return JobRequest(Kind.LLM, gpus, config.base_dir / out, {}, user_id="U1", channel_id="C1")


async def ended(rt: Runtime, job_id: str, within: float = 180) -> Job:
    async def done() -> Job | None:
        job = await rt.store.require(job_id)
        return job if job.state.is_terminal else None

    job: Job = await wait_until(done, within, f"job {job_id} to end")
    return job


def group_alive(pgid: int) -> list[int]:
    alive = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


async def test_job_succeeds_with_progress_then_exports_twice(
    make_config: MakeConfig, open_runtime: OpenRuntime
) -> None:
    config = make_config(extra={"dataloader_num_workers": 2})  # worker processes, as the seed's 4
    rt = await open_runtime(config)
    job = await rt.supervisor.submit(request(config))
    assert job.state is JobState.RUNNING and job.train_run.pid is not None
    job = await ended(rt, job.id)
    log = Path(job.train_run.log_path or "").read_text()
    assert job.state is JobState.SUCCEEDED, (job.failure, log[-2000:])
    assert job.train_run.log_path == str(config.log_dir / f"llm_training_{job.id}.log")  # the seed's naming
    # swift's sft script ran as the job's one process and left without the interpreter's teardown, its
    # dataloader workers with it
    assert "runner/swift_entry.py sft --model" in log.splitlines()[0]
    assert "leaving without the interpreter's teardown" in log
    pgid = job.train_run.pid or -1

    async def group_gone() -> bool:
        return group_alive(pgid) == []

    await wait_until(group_gone, 10, "the job's processes to be gone")
    p = job.progress
    assert p.step == p.max_steps and p.max_steps and p.max_steps > 10
    assert p.loss is not None and p.train_loss is not None and p.eval_loss is not None
    assert p.last_checkpoint and Path(p.last_checkpoint).is_dir()
    assert p.last_checkpoint.endswith(f"checkpoint-{p.max_steps}")
    kinds = [e.kind for e in await rt.store.events(job.id)]
    assert kinds[:2] == ["created", "started"] and kinds[-1] == "finished"
    assert "checkpoint" in kinds and "eval" in kinds
    topics = [n.topic for n in await rt.store.notices(job.id)]
    assert topics[0] == "job_created" and topics[1] == "job_started" and topics[-1] == "job_succeeded"
    assert topics.count("job_succeeded") == 1

    job_id = job.id

    async def exported() -> Job | None:
        j = await rt.store.require(job_id)
        return j if j.export_state is not ExportState.EXPORTING else None

    for _ in range(2):  # a second export reuses the merged folder instead of failing on it
        await rt.supervisor.export(job_id, by="U1")
        job = await wait_until(exported, 120, "the export to end")
        assert job.export_state is ExportState.EXPORTED, Path(job.export_run.log_path or "").read_text()[-2000:]
    merged = Path(job.export_dir or "")
    assert merged.parent == Path(p.last_checkpoint).parent and (merged / "model.safetensors").is_file()
    assert job.export_run.log_path == str(config.log_dir / f"llm_export_{job.id}.log")
    assert "runner/swift_entry.py export --adapters" in Path(job.export_run.log_path).read_text().splitlines()[0]
    assert [n.topic for n in await rt.store.notices(job.id)][-2:] == ["export_started", "export_succeeded"]


async def test_stop_mid_run_leaves_no_process_and_keeps_the_checkpoint(
    make_config: MakeConfig, open_runtime: OpenRuntime
) -> None:
    config = make_config(extra={"num_train_epochs": 30})
    rt = await open_runtime(config)
    job = await rt.supervisor.submit(request(config))
    assert job.train_run.pid is not None

    async def has_checkpoint() -> bool:
        return bool((await rt.store.require(job.id)).progress.last_checkpoint)

    await wait_until(has_checkpoint, 120, "a first checkpoint")
    stopping = await rt.supervisor.stop(job.id, by="U1")
    assert stopping.state is JobState.STOPPING
    job = await ended(rt, job.id, within=60)
    assert job.state is JobState.STOPPED and job.stopped_by == User("U1")
    assert job.progress.last_checkpoint and Path(job.progress.last_checkpoint).is_dir()
    assert job.progress.step is not None and job.progress.max_steps and job.progress.step < job.progress.max_steps
    assert group_alive(job.train_run.pid or -1) == []
    # swift's trainer got the SIGINT itself
    assert "KeyboardInterrupt" in Path(job.train_run.log_path or "").read_text()

    # start <id> again: back in line, resuming from that checkpoint
    again = await rt.supervisor.restart(job.id, by="U1")
    assert "--resume_from_checkpoint" in again.argv
    assert again.argv[again.argv.index("--resume_from_checkpoint") + 1] == job.progress.last_checkpoint
    await rt.supervisor.stop(again.id, by="U1")
    assert (await ended(rt, again.id, within=60)).state is JobState.STOPPED


async def test_hub_model_without_network_fails_with_the_hub_cause(
    make_config: MakeConfig, open_runtime: OpenRuntime
) -> None:
    # the fixed recipe's hub model id, with the local datasets: HF offline mode answers at once (no waiting on DNS)
    config = make_config(extra={"model": "Qwen/Qwen2.5-7B-Instruct"})
    config = config.changed(swift={"env": {**config.swift_env, "USE_HF": "1"}})
    rt = await open_runtime(config)
    job = await ended(rt, (await rt.supervisor.submit(request(config))).id, within=120)
    assert job.state is JobState.FAILED
    assert job.failure and job.failure.reason.code == "hub_unreachable", job.failure
    assert "Qwen/Qwen2.5-7B-Instruct" in failure_words.summary(job.failure)
    assert "mirror" in (failure_words.hint(job.failure) or "")
    failed = [n.facts for n in await rt.store.notices(job.id) if isinstance(n.facts, JobFailed)]
    assert len(failed) == 1 and failed[0].tail and failed[0].failure == job.failure


async def test_two_jobs_on_one_gpu_run_one_after_the_other(make_config: MakeConfig, open_runtime: OpenRuntime) -> None:
    config = make_config(sections="[gpus]\ninventory = 1\n")
    rt = await open_runtime(config)
    first = await rt.supervisor.submit(request(config, "output/a", ("0",)))
    second = await rt.supervisor.submit(request(config, "output/b", ("0",)))
    assert first.state is JobState.RUNNING
    assert second.state is JobState.QUEUED and second.queue_reason == GpusBusy({"0": first.id})
    queued = [n.facts for n in await rt.store.notices(second.id) if isinstance(n.facts, JobQueued)]
    assert queued and queued[0].position == 1
    first, second = await ended(rt, first.id), await ended(rt, second.id)
    assert first.state is second.state is JobState.SUCCEEDED
    assert first.finished_at and second.started_at and second.started_at >= first.finished_at


async def test_an_export_runs_on_its_jobs_free_gpu_and_holds_it_until_it_ends(
    make_config: MakeConfig, open_runtime: OpenRuntime
) -> None:
    config = make_config(sections="[gpus]\ninventory = 1\n")
    rt = await open_runtime(config)
    first = await ended(rt, (await rt.supervisor.submit(request(config, "output/a", ("0",)))).id)
    assert first.state is JobState.SUCCEEDED
    exporting = await rt.supervisor.export(first.id, by="U1")
    assert exporting.export_gpus == ("0",)
    assert leases.held(await rt.store.holding()) == {"0": first.id}  # what `gpus` shows
    second = await rt.supervisor.submit(request(config, "output/b", ("0",)))
    assert second.state is JobState.QUEUED and second.queue_reason == GpusBusy({"0": first.id})
    second = await ended(rt, second.id)
    first = await rt.store.require(first.id)
    assert first.export_state is ExportState.EXPORTED, Path(first.export_run.log_path or "").read_text()[-2000:]
    exported_at = next(e.at for e in await rt.store.events(first.id) if e.kind == "exported")
    assert second.state is JobState.SUCCEEDED and second.started_at and second.started_at >= exported_at
    started = [n.facts for n in await rt.store.notices(first.id) if isinstance(n.facts, ExportStarted)]
    assert [s.gpus for s in started] == [("0",)]

    third = await rt.supervisor.submit(request(config, "output/c", ("0",)))  # trains on GPU 0 meanwhile
    assert third.state is JobState.RUNNING
    assert (await rt.supervisor.export(second.id, by="U1")).export_gpus == ()  # so this export takes the CPU
    await rt.supervisor.stop(third.id, by="U1")
    await ended(rt, third.id)  # neither process may outlive the test (the bot's close leaves them running)

    async def exported() -> bool:
        return (await rt.store.require(second.id)).export_state is not ExportState.EXPORTING

    await wait_until(exported, 180, f"job {second.id}'s export to end")


async def test_gpu_that_does_not_exist_is_refused_with_the_gpus_there_are(
    make_config: MakeConfig, open_runtime: OpenRuntime
) -> None:
    config = make_config(sections="[gpus]\ninventory = 2\n")
    rt = await open_runtime(config)
    with pytest.raises(GpuMissing) as refused:
        await rt.supervisor.submit(request(config, gpus=("7",)))
    assert (refused.value.missing, refused.value.have, refused.value.suggest) == (("7",), ("0", "1"), ("0",))
    assert refusals.error_text(refused.value).startswith("GPU 7 does not exist on this machine; it has GPUs 0 and 1")
    assert await rt.store.list_jobs() == []  # nothing half-written


async def test_missing_swift_or_unwritable_output_fails_at_once(
    make_config: MakeConfig, open_runtime: OpenRuntime, tmp_path: Path
) -> None:
    config = make_config(swift_bin=str(tmp_path / "no-such-swift"))
    rt = await open_runtime(config)
    job = await rt.supervisor.submit(request(config))
    assert job.state is JobState.FAILED and job.failure and "was not found" in failure_words.summary(job.failure)

    blocked = tmp_path / "output" / "ro"
    blocked.write_text("a file where the output folder should be")
    config = make_config()
    rt2 = await open_runtime(config)
    job = await rt2.supervisor.submit(request(config, "output/ro/x"))
    assert job.state is JobState.FAILED and job.failure
    assert "cannot create the output folder" in failure_words.summary(job.failure)
