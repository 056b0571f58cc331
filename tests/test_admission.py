"""May this job be queued, or start, here (runner/admission.py): one output folder, one job; every user-given path
judged where it really leads on disk, at create and again right before launch; a queued job may be deleted.

Real parts: the supervisor, SQLite store and local backend with tests/fake_swift.py as swift, `trainbot serve` over
real HTTP, the local Slurm daemons.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import requests

from bot.chat.handlers import Handlers
from bot.words import failures as failure_words
from bot.words.config import config_error_text
from bot.words.notices import notice_text
from runner import slurm_cli
from runner.access import Caller
from runner.config import Config, ConfigError, load_config
from runner.runtime import Runtime
from storage.failure_facts import PathOutsideRoot
from storage.models import JobState
from storage.notices import JobQueued
from tests.api_env import Served, serving
from tests.conftest import OpenRuntime
from tests.slack_env import fake_config
from tests.waiting import wait_until, wait_until_sync

ME = Caller(user_id="U1", channel_id="C1", console=True)


async def _state(rt: Runtime, job_id: str) -> JobState:
    return (await rt.store.require(job_id)).state


@pytest.fixture
async def open_runtime(open_runtime: OpenRuntime) -> AsyncIterator[OpenRuntime]:
    """conftest's, and at the end every job still under way is stopped: no trainer outlives a test, failed or not."""
    opened: list[Runtime] = []

    async def open_(config: Config) -> Runtime:
        opened.append(await open_runtime(config))
        return opened[-1]

    yield open_
    for rt in opened:
        for job in await rt.store.active():
            await rt.supervisor.stop(job.id, by=None)
        await wait_until(lambda rt=rt: _none_active(rt), 30, "every job to stop")


async def _none_active(rt: Runtime) -> bool:
    return not await rt.store.active()


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---- case 2: two jobs on one output folder ------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Served]:
    fake_config(tmp_path, steps=400, step_s=0.1)
    with serving(tmp_path) as served:
        yield served


def _status(api: Served, job_id: str) -> str:
    reply = requests.get(f"{api.url}/training/jobs/{job_id}/status", timeout=10)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["status"])


@pytest.mark.slow
def test_api_second_held_job_on_one_folder_is_refused_at_start(api: Served, tmp_path: Path) -> None:
    url = f"{api.url}/training"
    made = [
        requests.post(f"{url}/llm/jobs", json={"gpu_id": gpu, "output_dir": "output/twin"}, timeout=10)
        for gpu in ("0", "1")
    ]
    assert [r.status_code for r in made] == [201, 201], [r.text for r in made]  # held jobs hold no folder yet
    first, second = (r.json()["job_id"] for r in made)
    try:
        assert requests.post(f"{url}/jobs/{first}/start", timeout=10).status_code == 200
        refused = requests.post(f"{url}/jobs/{second}/start", timeout=10)
        assert refused.status_code == 409, refused.text
        body = refused.json()
        assert f"job {first} is still active and writes to {tmp_path / 'output' / 'twin'}" in body["error"]
        assert body["endpoint"] == f"POST /training/jobs/{first}/stop"  # the call that frees the folder
        assert _status(api, second) == "created"  # refused: nothing changed, it never ran
        assert len(list((tmp_path / "output" / "twin").glob("v*"))) <= 1  # one trainer's run folder at most
        _stop(api, first)
        started = requests.post(f"{url}/jobs/{second}/start", timeout=10)  # the folder is free once the first ended
        assert started.status_code == 200, started.text
    finally:
        for job_id in (first, second):  # whatever happened: no trainer outlives the test
            _stop(api, job_id)


def _stop(api: Served, job_id: str) -> None:
    requests.post(f"{api.url}/training/jobs/{job_id}/stop", timeout=10)
    wait_until_sync(
        lambda: _status(api, job_id) in ("created", "stopped", "succeeded", "failed"), 60, f"job {job_id} to stop"
    )


async def test_console_second_held_job_on_one_folder_is_refused_at_start(
    tmp_path: Path, open_runtime: OpenRuntime
) -> None:
    rt = await open_runtime(fake_config(tmp_path, steps=400, step_s=0.1))
    bot = Handlers(rt)
    held = [await bot.handle(f"llm gpu={gpu} out=output/twin --hold", ME) for gpu in (0, 1)]
    assert all(r.ok and r.job_id for r in held), [r.text for r in held]
    first, second = (r.job_id or "" for r in held)
    assert (await bot.handle(f"start {first}", ME)).ok
    refused = await bot.handle(f"start {second}", ME)
    assert not refused.ok and f"Job {first} is still active and writes to" in refused.text, refused.text
    assert await _state(rt, second) is JobState.CREATED
    # through a link inside the output root to the same folder: the same folder, refused too
    (tmp_path / "output" / "alias").symlink_to(tmp_path / "output" / "twin")
    other = await bot.handle("llm gpu=2 out=output/alias", ME)
    assert not other.ok and f"Job {first} is still active" in other.text, other.text
    await bot.handle(f"stop {first}", ME)
    await wait_until(lambda: _ended(rt, first), 30, "the first job to end")


async def _ended(rt: Runtime, job_id: str) -> bool:
    return (await _state(rt, job_id)).is_terminal


async def _state_is(rt: Runtime, job_id: str, state: JobState) -> bool:
    return await _state(rt, job_id) is state


async def test_an_export_and_a_training_never_share_a_folder(tmp_path: Path, open_runtime: OpenRuntime) -> None:
    rt = await open_runtime(
        fake_config(tmp_path, steps=40, save_steps=20, step_s=0.05, env={"FAKE_SWIFT_EXPORT_S": "3"})
    )
    bot = Handlers(rt)
    done = await bot.handle("llm gpu=0 out=output/a", ME)
    await wait_until(lambda: _state_is(rt, done.job_id or "", JobState.SUCCEEDED), 60, "the first job to succeed")
    assert (await bot.handle(f"export {done.job_id}", ME)).ok
    refused = await bot.handle("llm gpu=1 out=output/a", ME)  # its export writes inside output/a
    assert not refused.ok and f"Job {done.job_id}'s export is writing to" in refused.text, refused.text
    await wait_until(lambda: _exported(rt, done.job_id or ""), 30, "the export to end")
    taker = await bot.handle("llm gpu=1 out=output/a", ME)  # free again: a new job may train there ...
    assert taker.ok, taker.text
    again = await bot.handle(f"export {done.job_id}", ME)  # ... and the old job's export may not write in it
    assert not again.ok and f"Job {taker.job_id} is still active and writes to" in again.text, again.text
    assert "where this export would write" in again.text


async def _exported(rt: Runtime, job_id: str) -> bool:
    return (await rt.store.require(job_id)).export_state.value in ("exported", "export_failed")


# ---- case 3: a symlink inside the output root ---------------------------------------------------------------


async def test_link_out_of_the_output_root_is_refused_at_create(tmp_path: Path, open_runtime: OpenRuntime) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    rt = await open_runtime(fake_config(tmp_path, steps=4, step_s=0.05))
    (tmp_path / "output").mkdir(exist_ok=True)
    (tmp_path / "output" / "escape-link").symlink_to(outside)
    refused = await Handlers(rt).handle("llm gpu=1 out=output/escape-link/x", ME)
    assert not refused.ok and "output/escape-link/x" in refused.text and str(outside / "x") in refused.text, (
        refused.text
    )
    assert "[paths] output_root" in refused.text
    assert await rt.store.list_jobs() == [] and _files(outside) == []


@pytest.mark.slow
def test_api_link_out_of_the_output_root_is_refused_at_create(api: Served, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "output").mkdir(exist_ok=True)
    (tmp_path / "output" / "escape-link").symlink_to(outside)
    reply = requests.post(
        f"{api.url}/training/llm/jobs",
        timeout=10,
        json={"gpu_id": "1", "output_dir": "output/escape-link/x", "start": True},
    )
    if reply.status_code < 300:  # made (the defect): no trainer outlives the test
        _stop(api, reply.json()["job_id"])
    assert reply.status_code == 422, reply.text
    assert str(outside / "x") in reply.json()["error"] and "output_dir" in reply.json()["error"]
    assert requests.get(f"{api.url}/training/all/jobs", timeout=10).json()["jobs"] == []
    assert _files(outside) == []


async def test_link_made_after_create_fails_the_launch_before_any_process(
    tmp_path: Path, open_runtime: OpenRuntime
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    rt = await open_runtime(fake_config(tmp_path, steps=400, step_s=0.1))
    bot = Handlers(rt)
    busy = await bot.handle("llm gpu=0 out=output/busy", ME)
    waiting = await bot.handle("llm gpu=0 out=output/later/x", ME)  # waits behind `busy` for GPU 0
    assert busy.ok and waiting.ok and waiting.job_id and busy.job_id
    assert await _state(rt, waiting.job_id) is JobState.QUEUED
    (tmp_path / "output" / "later").symlink_to(outside)  # made while it waits
    await bot.handle(f"stop {busy.job_id}", ME)
    await wait_until(lambda: _ended(rt, waiting.job_id or ""), 30, "the waiting job to end")
    job = await rt.store.require(waiting.job_id)
    assert job.state is JobState.FAILED and job.failure is not None
    refusal = job.failure.reason
    assert isinstance(refusal, PathOutsideRoot) and refusal.root_key == "paths.output_root", refusal
    assert (refusal.path, refusal.resolved) == (str(tmp_path / "output" / "later" / "x"), str(outside / "x"))
    words = failure_words.summary(job.failure)
    assert str(tmp_path / "output" / "later" / "x") in words and str(outside / "x") in words, words
    assert job.train_run.pid is None and job.started_at is None  # no process was started
    assert _files(outside) == []  # nothing written outside
    failed = [n for n in await rt.store.notices(job.id) if n.topic == "job_failed"]
    assert failed and str(outside / "x") in notice_text(failed[0])


async def test_model_path_relinked_outside_its_root_is_refused_at_start(
    tmp_path: Path, open_runtime: OpenRuntime
) -> None:
    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    config = fake_config(tmp_path, steps=4, step_s=0.05, sections='[paths]\nmodel_roots = ["models"]\n')
    rt = await open_runtime(config)
    made = await Handlers(rt).handle("vlm gpu=0 out=output/v model=models/m --hold", ME)
    assert made.ok and made.job_id, made.text
    (tmp_path / "models" / "m").rmdir()
    (tmp_path / "models" / "m").symlink_to(tmp_path / "elsewhere")
    refused = await Handlers(rt).handle(f"start {made.job_id}", ME)
    assert not refused.ok and str(tmp_path / "elsewhere") in refused.text and "[paths] model_roots" in refused.text
    assert await _state(rt, made.job_id) is JobState.CREATED


def test_log_dir_linked_elsewhere_is_refused_at_start_naming_the_key(tmp_path: Path) -> None:
    base, elsewhere = tmp_path / "bot", tmp_path / "elsewhere"
    base.mkdir()
    elsewhere.mkdir()
    (base / "logs").symlink_to(elsewhere)  # `log_dir = "logs"` would write to elsewhere
    with pytest.raises(ConfigError) as refused:
        load_config(base_dir=base)
    said = config_error_text(refused.value)
    assert "[paths] log_dir" in said and str(elsewhere) in said
    os.rename(base / "logs", base / "old-link")
    assert load_config(base_dir=base).log_dir == base / "logs"
    assert load_config(base_dir=base, overrides={"paths.log_dir": str(elsewhere)}).log_dir == elsewhere


# ---- case 10: a queued job can be deleted -------------------------------------------------------------------


async def test_queued_job_deleted_leaves_the_line_and_the_next_is_told_it_moved_up(
    tmp_path: Path, open_runtime: OpenRuntime
) -> None:
    rt = await open_runtime(fake_config(tmp_path, steps=400, step_s=0.1))
    bot = Handlers(rt)
    running, second, third = [await bot.handle(f"llm gpu=0 out=output/{name}", ME) for name in ("r", "s", "t")]
    assert all(r.ok and r.job_id for r in (running, second, third))

    async def places() -> dict[str, int | None]:  # once both waiting jobs were told their place in line
        told = {
            n.job_id: n.facts.position
            for n in [*await rt.store.notices(second.job_id or ""), *await rt.store.notices(third.job_id or "")]
            if isinstance(n.facts, JobQueued)
        }
        return told if len(told) == 2 else {}

    assert await wait_until(places, 30, "the places in line") == {second.job_id: 1, third.job_id: 2}

    gone = await bot.handle(f"delete {second.job_id}", ME)
    assert gone.ok, gone.text
    assert await rt.store.get(second.job_id or "") is None
    told = [n for n in await rt.store.notices(third.job_id or "") if isinstance(n.facts, JobQueued)]
    assert [n.facts.position for n in told] == [2, 1]
    assert "moved up" in notice_text(told[-1]) and "#1 in line" in notice_text(told[-1])

    refused = await bot.handle(f"delete {running.job_id}", ME)  # a running job still cannot be deleted
    assert not refused.ok and "stop it first" in refused.text
    await bot.handle(f"stop {running.job_id}", ME)
    await wait_until(lambda: _ended(rt, running.job_id or ""), 30, "the running job to stop")
    await wait_until(lambda: _state_is(rt, third.job_id or "", JobState.RUNNING), 30, "the third to start")
    await bot.handle(f"stop {third.job_id}", ME)
    await wait_until(lambda: _ended(rt, third.job_id or ""), 30, "the third job to stop")


@pytest.mark.slurm
async def test_slurm_queued_job_deleted_is_cancelled_in_slurm_first(tmp_path: Path) -> None:
    from tests.slurm_bot import bot, job_when, request, slurm_job
    from tests.slurm_bot import fake_config as slurm_config
    from tests.slurm_cluster import require_slurm

    require_slurm()
    config = slurm_config(tmp_path, slurm='extra_args = ["--hold"]\n')
    async with bot(config) as rt:
        job = await rt.supervisor.submit(request(config, "held"))
        job = await job_when(rt, job.id, lambda j: j.train_run.backend_job_id, "is handed to Slurm")
        slurm_id = job.train_run.backend_job_id or ""
        try:
            await rt.supervisor.delete(job.id, by="U1")
            assert await rt.store.get(job.id) is None
            assert (await slurm_job(slurm_id)).state == "CANCELLED"
        finally:
            await slurm_cli.cancel(slurm_id)
