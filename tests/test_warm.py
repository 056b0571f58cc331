"""A process kept warm for the next job (runner/warm.py): the real local backend, launcher and runner/swift_entry.py
with a stand-in swift package (first on the path, through `[swift] env`) that tells what it finds: which process
imported it, and the job's environment; beside it a stand-in torch, for the one call the entry makes (turning cuDNN's
attention off), so these run without torch (tests/warm_standin.py). The last test runs the real swift twice on the
tiny model."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from bot.words.profiles import note_words
from runner.backends.local import LocalBackend
from runner.command import direct_entry
from runner.config import Config
from runner.supervisor import JobRequest
from runner.swift_entry import NO_CUDNN_ATTENTION, READY, cold_reason
from runner.swift_levers import MICRO_BATCH_TOKENS, TRITON_CACHE_DIR
from runner.warm import WarmSlot
from storage.models import Job, JobState, Kind
from tests.conftest import MakeConfig, OpenRuntime
from tests.waiting import wait_until
from tests.warm_standin import (
    IMPORTED,
    PIPELINES,
    exit_of,
    job_line,
    launch,
    ready_slot,
    run,
    sft,
    standin_backend,
    standin_config,
    warm_saying,
)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return standin_config(tmp_path)


@pytest.fixture
async def backend(tmp_path: Path, config: Config) -> AsyncIterator[LocalBackend]:
    b = LocalBackend(tmp_path / "exits", config)
    yield b
    await b.close()


async def test_the_next_job_runs_in_the_process_that_imported_swift_before_it_came(
    backend: LocalBackend, config: Config, tmp_path: Path
) -> None:
    code, log = await run(backend, "first", sft(config, "--n", "1"), tmp_path / "first.log")
    assert code == 0 and "started warm" not in log  # no warm process yet
    slot = await ready_slot(backend)
    warm_pid = psutil.Process(slot.proc.pid).children()[0].pid
    code, log = await run(
        backend, "second", sft(config, "--n", "2", env={NO_CUDNN_ATTENTION: "1"}), tmp_path / "second.log"
    )
    assert code == 0, log
    lines = log.splitlines()
    assert "runner/swift_entry.py sft --n 2" in lines[0]  # the job's own header first, then what the import said
    assert lines[1] == f"{IMPORTED} {warm_pid}" and lines[2].startswith(READY)
    assert lines[3] == "[trainbot] started warm: in the process that imported swift before the job came"
    assert job_line(log) == {
        "pid": warm_pid,
        "args": ["--n", "2"],
        "env": {
            "CUDA_VISIBLE_DEVICES": "",
            NO_CUDNN_ATTENTION: "1",
            "JOB_ONLY": None,
            "PYTORCH_NVML_BASED_CUDA_CHECK": None,
        },
    }
    assert not slot.preamble.exists()
    next_slot = await ready_slot(backend)  # and the one after is being kept ready
    assert next_slot is not slot


async def test_a_bot_on_a_gpu_machine_keeps_one_warm_from_the_start(
    backend: LocalBackend, config: Config, tmp_path: Path
) -> None:
    """What the runtime does at start where NVML sees GPUs: the first job already starts warm."""
    backend.keep_warm()
    await ready_slot(backend)
    code, log = await run(backend, "first", sft(config), tmp_path / "first.log")
    assert code == 0 and "[trainbot] started warm" in log, log


async def test_a_job_whose_environment_differs_where_imports_read_starts_afresh(
    backend: LocalBackend, config: Config, tmp_path: Path
) -> None:
    await run(backend, "first", sft(config), tmp_path / "first.log")
    slot = await ready_slot(backend)
    warm_pid = psutil.Process(slot.proc.pid).children()[0].pid
    code, log = await run(backend, "second", sft(config, env={"JOB_ONLY": "yes"}), tmp_path / "second.log")
    assert code == 0, log
    assert "[trainbot] not started warm: its environment differs in JOB_ONLY, which may be read at import" in log
    assert "[trainbot] started warm" not in log
    job = job_line(log)
    assert job["pid"] == warm_pid  # the same process, started afresh (exec): what ran is the fresh job
    assert job["env"] == {
        "CUDA_VISIBLE_DEVICES": "",
        NO_CUDNN_ATTENTION: None,
        "JOB_ONLY": "yes",
        "PYTORCH_NVML_BASED_CUDA_CHECK": None,
    }
    assert log.count(IMPORTED) == 2  # by the warm process, then again by the fresh one


async def test_a_job_starts_afresh_when_swift_was_updated_while_the_warm_process_waited(
    backend: LocalBackend, config: Config, tmp_path: Path
) -> None:
    """What the warm process imported is not what is on disk any more (`pip install -U ...`): the job must run the
    new code, so it starts afresh."""
    await run(backend, "first", sft(config), tmp_path / "first.log")
    await ready_slot(backend)
    pipelines = Path(config.swift_env["PYTHONPATH"]) / "swift" / "pipelines" / "__init__.py"
    pipelines.write_text(PIPELINES.replace(IMPORTED, "stand-in swift 2 imported by"))
    os.utime(pipelines, ns=(pipelines.stat().st_atime_ns, pipelines.stat().st_mtime_ns + 10**9))
    code, log = await run(backend, "second", sft(config), tmp_path / "second.log")
    assert code == 0, log
    assert (
        f"[trainbot] not started warm: 1 file(s) it imported changed since (e.g. {pipelines}): swift or a "
        "package it uses was updated; starting swift afresh"
    ) in log
    assert "stand-in swift 2 imported by" in log


async def test_a_warm_process_that_could_not_import_is_passed_over_and_the_job_starts_afresh(tmp_path: Path) -> None:
    async with standin_backend(tmp_path, 'STANDIN_WARM_FAILS = "1"\n') as (b, config):
        await run(b, "first", sft(config), tmp_path / "first.log")
        failed = await warm_saying(b, "cannot import while warm", "the warm process to fail its imports")
        code, log = await run(b, "second", sft(config, "--n", "2"), tmp_path / "second.log")
        assert code == 0, log
        assert (
            "[trainbot] warm start not applied (warm_start): swift could not be imported in the process kept "
            "warm (SystemExit: stand-in: cannot import while warm); starting swift afresh"
        ) in log
        assert "[trainbot] started warm" not in log and job_line(log)["args"] == ["--n", "2"]
        assert b.warm is not failed  # another one is tried for the next job


async def test_a_job_handed_to_a_warm_process_whose_imports_then_fail_starts_afresh(tmp_path: Path) -> None:
    """The job came while the warm process was importing, and the import failed after (issue 26, case 11: the job
    failed with `No module named ...`)."""
    go = tmp_path / "fail-now"
    async with standin_backend(tmp_path, f'STANDIN_WARM_FAILS_AFTER = "{go}"\n') as (b, config):
        await run(b, "first", sft(config), tmp_path / "first.log")
        slot = await warm_saying(b, "importing slowly", "the warm process to be importing")
        log = tmp_path / "second.log"
        ref = await launch(b, "second", sft(config, "--n", "2"), log)
        assert b.warm is not slot  # it was handed the job
        go.touch()
        assert await exit_of(b, ref) == 0, log.read_text()
        text = log.read_text()
        assert "No module named 'a_module_this_machine_lacks'" in text  # what the import said, in the job's log
        assert (
            "[trainbot] warm start not applied (warm_start): swift could not be imported in the process kept "
            "warm (ModuleNotFoundError: No module named 'a_module_this_machine_lacks'); starting swift afresh"
        ) in text
        assert job_line(text)["args"] == ["--n", "2"]


async def test_a_job_starts_afresh_when_the_warm_process_was_killed(
    backend: LocalBackend, config: Config, tmp_path: Path
) -> None:
    backend.keep_warm()
    slot = await ready_slot(backend)
    os.killpg(slot.proc.pid, signal.SIGKILL)  # an OOM killer, an admin: launcher and child gone

    async def dead() -> bool:
        return not slot.alive()

    await wait_until(dead, 10, "the killed warm process to be dead")
    code, log = await run(backend, "first", sft(config, "--n", "1"), tmp_path / "first.log")
    assert code == 0, log
    assert "[trainbot] started warm" not in log and job_line(log)["args"] == ["--n", "1"]
    assert backend.warm is not slot


async def test_a_stop_reaches_a_job_in_a_warm_process(backend: LocalBackend, config: Config, tmp_path: Path) -> None:
    await run(backend, "first", sft(config), tmp_path / "first.log")
    await ready_slot(backend)
    log = tmp_path / "second.log"
    ref = await launch(backend, "second", sft(config, "--forever"), log)

    async def running() -> bool:
        return "\njob {" in log.read_text()

    await wait_until(running, 30, "the job to run")
    assert await backend.interrupt(ref)

    assert await exit_of(backend, ref) == -signal.SIGINT  # python's way to end on an unhandled KeyboardInterrupt
    assert "KeyboardInterrupt" in log.read_text()


async def test_a_stop_reaches_a_job_whose_warm_process_is_still_importing(tmp_path: Path) -> None:
    async with standin_backend(tmp_path, 'STANDIN_WARM_SLOW = "1"\n') as (b, config):
        await run(b, "first", sft(config), tmp_path / "first.log")
        slot = await warm_saying(b, "importing slowly", "the warm process to be importing")
        assert not slot.ready()
        log = tmp_path / "second.log"
        ref = await launch(b, "second", sft(config), log)
        assert await b.interrupt(ref)
        assert await exit_of(b, ref) == -signal.SIGINT
        text = log.read_text()  # what the process printed before the stop reached it: in the job's log
        assert "stand-in: importing slowly" in text and "KeyboardInterrupt" in text, text
        assert not slot.preamble.exists()


async def test_the_warm_process_goes_with_the_bot_whether_closed_or_lost(
    backend: LocalBackend, config: Config, tmp_path: Path
) -> None:
    await run(backend, "first", sft(config), tmp_path / "first.log")
    slot = await ready_slot(backend)
    pids = [slot.proc.pid, *(c.pid for c in psutil.Process(slot.proc.pid).children())]
    await backend.close()

    async def gone() -> bool:
        return not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]

    await wait_until(gone, 10, "the warm processes to be gone")

    entry = direct_entry(config.swift_bin)
    assert entry is not None
    lost = await WarmSlot.start(entry, {**os.environ, "PYTHONPATH": config.swift_env["PYTHONPATH"]}, tmp_path / "exits")

    async def child() -> list[psutil.Process]:
        return psutil.Process(lost.proc.pid).children()

    warm_child = (await wait_until(child, 10, "the warm child"))[0]
    assert lost.proc.stdin is not None
    lost.proc.stdin.close()  # what the launcher sees when the bot dies

    async def left() -> bool:
        return lost.proc.returncode is not None and not warm_child.is_running()

    await wait_until(left, 30, "the launcher and its child to leave")
    assert lost.proc.returncode == 0
    assert lost.preamble.exists()  # the dead bot could not remove it: the next bot does, before its first
    again = LocalBackend(tmp_path / "exits", config)
    try:
        again.keep_warm()
        assert (await ready_slot(again)).preamble.exists() and not lost.preamble.exists()
    finally:
        await again.close()


@pytest.mark.parametrize(
    ("import_env", "job_env", "cuda", "started", "why"),
    [
        (
            {"A": "1"},
            {
                "A": "1",
                "CUDA_VISIBLE_DEVICES": "1",
                "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
                NO_CUDNN_ATTENTION: "1",
                MICRO_BATCH_TOKENS: "8683",
                TRITON_CACHE_DIR: "/var/lib/trainbot/compile/triton",
            },
            True,
            False,
            None,
        ),  # read when the job comes, or when Triton compiles: a `fast` job still starts warm
        (
            {"A": "1"},
            {"A": "2", "B": "3", "CUDA_VISIBLE_DEVICES": "1"},
            True,
            False,
            "its environment differs in A, B, which may be read at import",
        ),
        (
            {},
            {"CUDA_VISIBLE_DEVICES": "0"},
            True,
            True,
            "CUDA was started while swift was imported, before the job named its GPUs",
        ),
        ({}, {"CUDA_VISIBLE_DEVICES": "0"}, False, False, "swift was imported on a machine without CUDA"),
        ({}, {"CUDA_VISIBLE_DEVICES": ""}, True, False, "swift was imported seeing GPUs, and this job runs on the CPU"),
        ({}, {"CUDA_VISIBLE_DEVICES": ""}, False, False, None),
    ],
)
def test_a_job_runs_warm_only_where_nothing_read_at_import_differs(
    import_env: dict[str, str], job_env: dict[str, str], cuda: bool, started: bool, why: str | None
) -> None:
    assert cold_reason(import_env, job_env, cuda=cuda, cuda_started=started) == why


@pytest.mark.swift
async def test_a_second_real_job_starts_warm_and_learns_the_same(
    make_config: MakeConfig, open_runtime: OpenRuntime
) -> None:
    config = make_config()
    rt = await open_runtime(config)
    losses = []
    for n in range(2):
        job = await rt.supervisor.submit(JobRequest(Kind.LLM, ("cpu",), config.base_dir / f"output/{n}", {}))

        async def ended(job_id: str = job.id) -> Job | None:
            found = await rt.store.require(job_id)
            return found if found.state.is_terminal else None

        if n == 1:
            last = rt.supervisor.plan(JobRequest(Kind.LLM, ("cpu",), config.base_dir / "o", {})).notes[-1]
            assert note_words(last).startswith("starts in a process that had swift loaded before the job came")
        job = await wait_until(ended, 180, f"job {n} to end")
        log = Path(job.train_run.log_path or "").read_text()
        assert job.state is JobState.SUCCEEDED, log[-2000:]
        assert ("[trainbot] started warm" in log) == (n == 1), log[:3000]
        losses.append(job.progress.train_loss)
        if n == 0:

            async def warm() -> bool:
                return rt.local is not None and rt.local.warm is not None

            await wait_until(warm, 30, "a warm process")
    assert losses[0] is not None and losses[0] == losses[1]
