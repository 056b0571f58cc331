"""Planning is a pure function of (request, config, probed facts); the slow probes run off the event loop, once."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from pathlib import Path

import pytest

from runner.config import Config, load_config
from runner.gpus import Gpu
from runner.planner import DIRECT_NOTE, WARM_NOTE, JobRequest, ProbedFacts, plan, probe_facts
from runner.profiles import NO_CUDNN_NOTE, PADDING_FREE_NOTE
from runner.runtime import Runtime
from runner.swift_entry import NO_CUDNN_ATTENTION
from runner.swift_levers import MICRO_BATCH_TOKENS, TRITON_CACHE_DIR
from runner.swift_version import SwiftVersion
from storage.models import Kind

GIB = 1024


def slow_swift(tmp_path: Path) -> tuple[Path, Path]:
    """A swift script whose python takes 2 s to answer each probe (version: 4.7.1; Liger: absent); each asking
    is counted in a file."""
    asked = tmp_path / "asked"
    python = tmp_path / "slowpython"
    python.write_text(
        f'#!/bin/sh\necho x >> "{asked}"\nsleep 2\ncase "$2" in *ms-swift*) echo 4.7.1 ;; *) exit 1 ;; esac\n'
    )
    swift = tmp_path / "bin" / "swift"
    swift.parent.mkdir()
    swift.write_text(f"#!{python}\nprint('swift')\n")
    for p in (python, swift):
        p.chmod(0o755)
    return swift, asked


def python_console_script(tmp_path: Path) -> Path:
    """A `swift` whose first line names a python: what the direct entry (and the warm start) need to see."""
    python = tmp_path / "python3"
    python.symlink_to("/bin/true")
    swift = tmp_path / "swift"
    swift.write_text(f"#!{python}\nprint('swift')\n")
    swift.chmod(0o755)
    return swift


def config_with(tmp_path: Path, swift: Path, more: str = "") -> Config:
    path = tmp_path / "trainbot.toml"
    path.write_text(f'[swift]\nbin = "{swift}"\n{more}')
    return load_config(path, base_dir=tmp_path)


async def test_the_first_dry_run_after_start_does_not_wait_on_the_swift_probes(tmp_path: Path) -> None:
    swift, asked = slow_swift(tmp_path)
    config = config_with(tmp_path, swift)
    lags: list[float] = []

    async def beat() -> None:  # how late the loop wakes a 50 ms sleeper: an ack would be as late
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.05)
            lags.append(time.monotonic() - before - 0.05)

    beater = asyncio.create_task(beat())
    try:
        rt = await Runtime.open(config)
        try:
            made = rt.supervisor.plan(JobRequest(Kind.LLM, ("cpu",), tmp_path / "o", {}))
        finally:
            await rt.close()
    finally:
        beater.cancel()
    assert made.version == SwiftVersion(4, 7, 1)  # the probed swift's, not the default
    assert len(asked.read_text().splitlines()) == 2  # version and Liger, once each
    assert max(lags) < 1.0, f"the event loop stalled {max(lags):.2f} s"

    again = await probe_facts(config)  # cached: nothing asked again
    assert again.swift_version == SwiftVersion(4, 7, 1) and len(asked.read_text().splitlines()) == 2
    os.utime(swift, (swift.stat().st_atime, swift.stat().st_mtime + 10))  # swift upgraded
    await probe_facts(config)
    assert len(asked.read_text().splitlines()) == 4


def gpu(index: str, gib: int) -> Gpu:
    return Gpu(index, "NVIDIA H100", 0.0, gib * GIB, 0.0, (), "nvml")


@pytest.mark.parametrize("count", [1, 2, 4])
@pytest.mark.parametrize("gib", [80, 141])
def test_plan_over_facts_fast_changes_the_recipe_exact_runs_the_seeds(tmp_path: Path, count: int, gib: int) -> None:
    config = load_config(base_dir=tmp_path)
    gpus = tuple(str(i) for i in range(count))
    facts = ProbedFacts(SwiftVersion(4, 6, 0), liger=True, gpus=tuple(gpu(i, gib) for i in gpus))
    req = JobRequest(Kind.LLM, gpus, tmp_path / "o", {})
    exact = plan(JobRequest(Kind.LLM, gpus, tmp_path / "o", {}, profile="exact"), config, facts, backend_name="local")
    fast = plan(req, config, facts, backend_name="slurm")
    assert exact.notes == () and exact.argv[:2] == ("swift", "sft")
    assert fast.notes and fast.argv != exact.argv  # what the profile changed is said, and changes the command
    assert fast.argv[:2] == ("swift", "sft") and DIRECT_NOTE not in fast.notes  # Slurm starts its own processes
    unknown = plan(req, config, ProbedFacts(), backend_name="slurm")  # no NVML facts: nothing GPU-specific
    assert unknown.argv != fast.argv
    assert "--resume_from_checkpoint" in plan(req, config, facts, resume_from="ck", backend_name="slurm").argv


def test_fast_through_the_entry_on_known_gpus_runs_attention_without_cudnn(tmp_path: Path) -> None:
    """The variable only works through runner/swift_entry.py: set (and said) where that entry runs on GPUs NVML
    knows, nowhere else: not for `exact`, not where `swift sft` runs (Slurm), not on the CPU."""
    swift = python_console_script(tmp_path)
    config = config_with(tmp_path, swift)
    facts = ProbedFacts(SwiftVersion(4, 6, 0), liger=True, gpus=(gpu("0", 141), gpu("1", 141)))

    def made(gpus: tuple[str, ...], profile: str = "fast", backend: str = "local") -> tuple[bool, bool]:
        p = plan(JobRequest(Kind.LLM, gpus, tmp_path / "o", {}, profile=profile), config, facts, backend_name=backend)
        assert (p.env.get(NO_CUDNN_ATTENTION) == "1") == (f"{NO_CUDNN_ATTENTION}=1" in p.display)  # shown as run
        return p.env.get(NO_CUDNN_ATTENTION) == "1", NO_CUDNN_NOTE in p.notes

    assert made(("0",)) == (True, True)
    assert made(("0", "1")) == (True, True)  # every rank runs the entry with the job's environment
    assert made(("0",), profile="exact") == (False, False)
    assert made(("0",), backend="slurm") == (False, False)
    assert made(("cpu",)) == (False, False)
    vlm = plan(JobRequest(Kind.VLM, ("0",), tmp_path / "o", {}), config, facts, backend_name="local")
    assert NO_CUDNN_ATTENTION not in vlm.env


def test_the_dry_run_says_when_a_job_may_start_in_the_warm_process(tmp_path: Path) -> None:
    """One process through the entry, on this machine, with `warm_start` on (the default): runner/warm.py."""
    swift = python_console_script(tmp_path)
    facts = ProbedFacts(SwiftVersion(4, 6, 0), gpus=(gpu("0", 141), gpu("1", 141)))

    def said(gpus: tuple[str, ...], profile: str = "fast", backend: str = "local", warm: bool = True) -> bool:
        config = config_with(tmp_path, swift, "" if warm else "[runner]\nwarm_start = false\n")
        p = plan(JobRequest(Kind.LLM, gpus, tmp_path / "o", {}, profile=profile), config, facts, backend_name=backend)
        return WARM_NOTE in p.notes

    assert said(("0",)) and said(("cpu",))
    assert not said(("0", "1"))  # ranks start under torch.distributed.run
    assert not said(("0",), profile="exact") and not said(("0",), backend="slurm") and not said(("0",), warm=False)


@pytest.mark.parametrize("count", [1, 2])
def test_padding_free_only_where_the_direct_entry_lets_swift_take_it(tmp_path: Path, count: int) -> None:
    """swift 4.6 refuses padding-free on sdpa by itself: only runner/swift_entry.py (local, not `exact`) lets it."""
    swift = tmp_path / "swift"  # a console script with a python in its first line, as pip writes one: the direct entry
    swift.write_text(f"#!{sys.executable}\nimport sys\nsys.exit('not run')\n")
    swift.chmod(0o755)
    config = config_with(tmp_path, swift)
    gpus = tuple(str(i) for i in range(count))
    facts = ProbedFacts(SwiftVersion(4, 6, 0), liger=True, gpus=tuple(gpu(i, 141) for i in gpus), packed_sdpa=True)

    def argv(profile: str, backend: str, packed: bool = True) -> tuple[str, ...]:
        return plan(
            JobRequest(Kind.LLM, gpus, tmp_path / "o", {}, profile=profile),
            config,
            dataclasses.replace(facts, packed_sdpa=packed),
            backend_name=backend,
        ).argv

    local = argv("fast", "local")
    assert "runner/swift_entry.py" in " ".join(local) and "--padding_free" in local
    assert local[local.index("--attn_impl") + 1] == "sdpa"
    both = plan(JobRequest(Kind.LLM, gpus, tmp_path / "o", {}), config, facts, backend_name="local")
    assert both.env.get(NO_CUDNN_ATTENTION) == "1" and NO_CUDNN_NOTE in both.notes  # alongside, not instead
    assert PADDING_FREE_NOTE in both.notes
    assert "--padding_free" not in argv("fast", "slurm")  # `swift sft` there: it would refuse
    assert "--padding_free" not in argv("exact", "local")
    assert "--padding_free" not in argv("fast", "local", packed=False)


def test_every_fast_job_on_known_gpus_keeps_tritons_kernels_under_the_data_dir(tmp_path: Path) -> None:
    """Issue 31: one folder for every `fast` job through the entry (the one runner/compile_kernels.py fills ahead of
    the first job), kept between jobs and restarts; the literal job and the CPU are left as they were."""
    swift = tmp_path / "swift"  # a console script with a python in its first line, as pip writes one: the direct entry
    swift.write_text(f"#!{sys.executable}\nimport sys\nsys.exit('not run')\n")
    swift.chmod(0o755)
    config = config_with(tmp_path, swift)
    facts = ProbedFacts(SwiftVersion(4, 6, 0), liger=True, gpus=(gpu("0", 80), gpu("1", 80)), packed_sdpa=True)

    def env(gpus: tuple[str, ...], profile: str = "fast", backend: str = "local") -> dict[str, str]:
        p = plan(JobRequest(Kind.LLM, gpus, tmp_path / "o", {}, profile=profile), config, facts, backend_name=backend)
        assert all(f"{k}=" in p.display for k in p.env)  # shown as run
        return p.env

    kept = str(config.data_dir / "compile" / "triton")
    assert env(("0",))[TRITON_CACHE_DIR] == kept and env(("0", "1"))[TRITON_CACHE_DIR] == kept
    assert int(env(("0",))[MICRO_BATCH_TOKENS]) > 8000  # an idle 80 GB card: steps by tokens
    assert MICRO_BATCH_TOKENS not in env(("0", "1"))
    for other in (env(("0",), profile="exact"), env(("0",), backend="slurm"), env(("cpu",))):
        assert TRITON_CACHE_DIR not in other and MICRO_BATCH_TOKENS not in other
