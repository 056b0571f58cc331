"""A job on several GPUs as trainbot starts it: torch.distributed.run on swift's python, one rank a GPU, each running
runner/swift_entry.py. On the CPU: two gloo ranks of a stand-in `swift.cli.sft` (the real launcher, entry and
backend; only swift's training is replaced), so a stop and an end can be watched rank by rank."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

import pytest

from runner import swift_entry
from runner.backends import ProcessRef
from runner.backends.local import LocalBackend
from runner.command import SwiftCommand
from runner.supervisor import DIRECT_RANKS_NOTE, JobRequest
from storage.models import JobState, Kind
from storage.notices import JobCreated
from tests.conftest import MakeConfig, OpenRuntime
from tests.waiting import wait_until

pytestmark = pytest.mark.swift  # torch.distributed.run on swift's python; the last test runs the tiny model too

STAND_IN = """
import os, sys, time
import torch.distributed as dist

out = sys.argv[sys.argv.index("--output_dir") + 1]
rank = os.environ["RANK"]
dist.init_process_group("gloo")
open(os.path.join(out, f"rank-{rank}.started"), "w").close()
try:
    while not os.path.exists(os.path.join(out, "finish")):
        time.sleep(0.05)
except KeyboardInterrupt:
    open(os.path.join(out, f"rank-{rank}.interrupted"), "w").close()
    raise
dist.barrier()
print(f"rank {rank}: End time of running main", flush=True)
"""


def stand_in_swift(root: Path) -> Path:
    cli = root / "swift" / "cli"
    cli.mkdir(parents=True)
    (root / "swift" / "__init__.py").write_text("")
    (cli / "__init__.py").write_text("")
    (cli / "sft.py").write_text(STAND_IN)
    return root


Ranks = tuple[LocalBackend, ProcessRef, Path, list[int]]


async def launch_ranks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ranks:
    site = stand_in_swift(tmp_path / "site")
    monkeypatch.setenv("PYTHONPATH", str(site))
    out = tmp_path / "out"
    out.mkdir()
    argv = (
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        swift_entry.__file__,
        "sft",
        "--output_dir",
        str(out),
    )
    backend = LocalBackend(tmp_path / "exits")
    exits: list[int] = []
    backend.on_exit = lambda: exits.append(1)
    ref = ProcessRef("job1", "train")
    launched = await backend.launch(ref, SwiftCommand(argv), log_path=tmp_path / "job.log", gpus=("cpu",))
    ref = dataclasses.replace(ref, run=launched.run(tmp_path / "job.log"))
    await wait_until(lambda: _all(out, "started"), 120, "both ranks to start")
    return backend, ref, out, exits


async def _all(out: Path, what: str) -> bool:
    return all((out / f"rank-{r}.{what}").exists() for r in (0, 1))


async def _ended(backend: LocalBackend, ref: ProcessRef) -> bool:
    return not (await backend.status(ref)).alive


async def test_a_stop_reaches_every_rank_as_sigint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend, ref, out, exits = await launch_ranks(tmp_path, monkeypatch)
    assert await backend.interrupt(ref)
    await wait_until(lambda: _all(out, "interrupted"), 60, "both ranks to see KeyboardInterrupt")
    await wait_until(lambda: _ended(backend, ref), 60, "the launcher to end")
    status = await backend.status(ref)
    assert status.returncode not in (0, None)  # a stop, not a success
    await asyncio.sleep(0)  # let the exit watcher run
    assert exits == [1]


async def test_an_ended_job_leaves_at_once_settled_once_with_one_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, ref, out, exits = await launch_ranks(tmp_path, monkeypatch)
    (out / "finish").touch()
    await wait_until(lambda: _ended(backend, ref), 60, "the launcher to end")
    assert (await backend.status(ref)).returncode == 0
    await wait_until(lambda: asyncio.sleep(0, result=exits == [1]), 10, "one exit notice")
    log = (tmp_path / "job.log").read_text()
    for rank in (0, 1):  # both ranks in the one log, each leaving its process group and the interpreter at once
        assert f"rank {rank}: End time of running main" in log
        assert f"[trainbot] rank {rank}: swift's main returned" in log
    assert log.count("process group destroyed") == 2
    assert not list(out.glob("*.interrupted"))


async def test_a_job_on_two_gpus_runs_one_rank_each_and_is_settled_once(
    make_config: MakeConfig, open_runtime: OpenRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two GPUs by inventory (no driver here); swift's python from the real `swift`, its sft script the stand-in
    monkeypatch.setenv("PYTHONPATH", str(stand_in_swift(tmp_path / "site")))
    config = make_config(sections="[gpus]\ninventory = 2\n")
    rt = await open_runtime(config)
    out = config.base_dir / "output" / "ranks"
    job = await rt.supervisor.submit(JobRequest(Kind.LLM, ("0", "1"), out, {}))
    assert job.argv[1:6] == ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    await wait_until(lambda: _all(out, "started"), 120, "both ranks to start")
    (out / "finish").touch()

    async def ended() -> bool:
        return (await rt.store.require(job.id)).state.is_terminal

    await wait_until(ended, 60, "the job to end")
    assert (await rt.store.require(job.id)).state is JobState.SUCCEEDED
    await rt.supervisor.tick()  # more ticks settle nothing again
    topics = [n.topic for n in await rt.store.notices(job.id)]
    assert topics.count("job_succeeded") == 1 and "job_failed" not in topics
    assert any(
        isinstance(n.facts, JobCreated) and DIRECT_RANKS_NOTE in n.facts.profile_notes
        for n in await rt.store.notices(job.id)
    )  # the thread says how
