"""Planning a job: (request, config, probed facts) -> the exact command, with what the speed profile changed.

`plan` does no I/O beyond reading the swift script's first line (the direct entry); the slow facts (the installed
swift's version, what its python has: Liger, a transformers that masks packed samples apart; each may start a
process) are gathered by `probe_facts` in a thread, once, and again only when `swift.bin`'s mtime changes (an
upgraded swift), so no Slack ack waits on them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from dataclasses import dataclass

from runner.command import build_sft, direct_entry, resolve_recipe
from runner.config import Config
from runner.errors import GpuMissing
from runner.gpus import Gpu
from runner.job_request import JobRequest
from runner.kernels import cache_env
from runner.profiles import apply_profile, swift_site, without_cudnn_attention
from runner.swift_version import SwiftVersion, detect_version, resolve_swift
from storage.profile_notes import DirectStart, ProfileNote, WarmStart

DEFAULT_VERSION = SwiftVersion(4, 6, 0)
# What each means for a job: bot/words/profiles.py; the ~27 s measured on the H200 is in runner/swift_entry.py.
DIRECT_NOTE = DirectStart()
DIRECT_RANKS_NOTE = DirectStart(ranks=True)
WARM_NOTE = WarmStart()


@dataclass(frozen=True)
class Plan:
    """What a job would run: the exact command, and warnings (GPU missing or busy) for a dry run."""

    argv: tuple[str, ...]
    env: dict[str, str]
    display: str
    warnings: tuple[GpuMissing, ...]
    version: SwiftVersion
    notes: tuple[ProfileNote, ...] = ()  # what the speed profile changed, for people to see


@dataclass(frozen=True)
class ProbedFacts:
    """What planning needs to know about this machine: the swift version, what swift's python has (Liger, a
    transformers that masks packed samples apart on sdpa), the GPUs NVML sees."""

    swift_version: SwiftVersion = DEFAULT_VERSION
    liger: bool = False
    gpus: tuple[Gpu, ...] = ()
    packed_sdpa: bool = False


_cache: dict[tuple[str, str | None, float | None], ProbedFacts] = {}


def _swift_mtime(swift_bin: str) -> float | None:
    try:
        return os.stat(resolve_swift(swift_bin)).st_mtime
    except Exception:  # missing swift: the launch says so; plan for the default version meanwhile
        return None


def _probe_swift(config: Config) -> ProbedFacts:
    if config.swift_version:
        version = SwiftVersion.parse(config.swift_version)
    else:
        try:
            version = detect_version(config.swift_bin)
        except Exception:  # swift missing: the launch will say so; build for the current major meanwhile
            version = DEFAULT_VERSION
    site = swift_site(config.swift_bin)
    return ProbedFacts(version, site.liger, packed_sdpa=site.packed_sdpa)


async def probe_facts(config: Config, gpus: tuple[Gpu, ...] = ()) -> ProbedFacts:
    """The swift facts, probed in a thread once per (swift.bin, its mtime), with `gpus` (NVML's, from the probe)."""
    key = (config.swift_bin, config.swift_version, await asyncio.to_thread(_swift_mtime, config.swift_bin))
    if key not in _cache:
        _cache[key] = await asyncio.to_thread(_probe_swift, config)
    return dataclasses.replace(_cache[key], gpus=gpus)


def nvml_gpus(all_gpus: tuple[Gpu, ...] | list[Gpu], wanted: tuple[str, ...]) -> list[Gpu]:
    """The requested GPUs as NVML sees them; empty when any is unknown (no driver, inventory, CPU)."""
    found = [g for g in all_gpus if g.index in wanted and g.source == "nvml"]
    return found if len(found) == len(wanted) else []


def plan(
    req: JobRequest, config: Config, facts: ProbedFacts, *, resume_from: str | None = None, backend_name: str
) -> Plan:
    """The command `req` would run on `backend_name` ("local" or "slurm"), given what was probed."""
    recipe = resolve_recipe(req.kind, config, req.overrides)
    gpus = nvml_gpus(facts.gpus, req.gpus)
    entry = direct_entry_for(req, config, backend_name)
    liger = bool(gpus) and req.profile != "exact" and facts.liger
    # padding-free on sdpa: swift accepts it only through the direct entry (runner/swift_entry.py)
    packed = bool(gpus) and req.profile != "exact" and facts.packed_sdpa and entry is not None
    recipe, notes = apply_profile(recipe, req.profile, gpus, liger=liger, packed=packed)
    if req.gpus == ("cpu",):
        recipe = recipe.with_args({"use_cpu": "true"})  # bf16 on the CPU needs it
    if resume_from:
        recipe = recipe.with_args({"resume_from_checkpoint": resume_from})
    recipe, attention = without_cudnn_attention(recipe, req.profile, gpus, direct=entry is not None)
    notes += attention
    if gpus and req.profile != "exact" and entry is not None:  # Triton's kernels kept between jobs (runner/kernels.py)
        recipe = recipe.with_env(cache_env(config.data_dir))
    if entry is not None:
        notes += (DIRECT_NOTE if len(req.gpus) == 1 else DIRECT_RANKS_NOTE,)
    if entry is not None and len(req.gpus) == 1 and config.warm_start:
        notes += (WARM_NOTE,)
    cmd = build_sft(recipe, output_dir=req.output_dir, config=config, version=facts.swift_version, entry=entry)
    return Plan(cmd.argv, cmd.env, cmd.display(), (), facts.swift_version, notes)


def direct_entry_for(req: JobRequest, config: Config, backend_name: str) -> list[str] | None:
    """Start swift's sft script ourselves (one process, or one a GPU under torch.distributed.run, as `swift sft`
    would) for a local job outside the `exact` profile, which runs the seed's command as it is."""
    if req.profile == "exact" or backend_name != "local":
        return None  # Slurm starts its jobs' processes itself (srun, torchrun across nodes)
    return direct_entry(config.swift_bin, processes=len(req.gpus) if req.gpus != ("cpu",) else 1)


def export_entry(config: Config, backend_name: str) -> list[str] | None:
    """One process, for an export: only local ones start directly."""
    return direct_entry(config.swift_bin) if backend_name == "local" else None
