"""May this job join the line, or start, here: the one decision that create, start, restart, export and every
launch (local and Slurm) go through.

It judges, as they are now on disk and in the store:
- where the job's user-given paths really lead (runner/paths.confine): its output folder inside
  `[paths] output_root`, local model and dataset paths inside `model_roots` / `data_roots`, its log file inside
  `[paths] log_dir`. Judged when the job joins the line and again right before its process starts: a symbolic link
  may have been made in between;
- whether its folder is free: no other job that is queued, starting, running or stopping trains in it, and no
  export writes in it (the same folder, or one inside the other, compared as they resolve on disk);
- whether its GPUs are free (this machine's; Slurm picks its own): `line`, over runner/leases.plan_starts.

The supervisor asks under its lock, so no second job takes a folder between the check and the change. Refusals are
typed (OutsideRoot, OutputInUse) with their facts as fields; the front ends word them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from runner import leases
from runner.config import Config
from runner.errors import OutputInUse
from runner.paths import confine, resolved
from storage.models import ExportState, Job, JobState, Purpose

_SAMPLES = re.compile(r"#[0-9]+$")  # a dataset's `#N`: use N samples


def admit(
    config: Config, job_id: str | None, output_dir: Path, overrides: Mapping[str, str], jobs: Iterable[Job]
) -> Path:
    """May a job (`job_id` None: a new one) with these paths join the line? Asked by create, start and restart,
    with `jobs` the store's holding jobs. Returns its output folder as it resolves on disk; raises OutsideRoot or
    OutputInUse."""
    folder = _paths(config, output_dir, overrides)
    _check_free(config, folder, jobs, job_id=job_id, wanted="train", launching=False)
    return folder


def admit_launch(config: Config, job: Job, jobs: Iterable[Job], log_path: Path) -> None:
    """Right before `job`'s process is started or submitted: its paths again, its log file inside the log folder,
    and its folder free of every job under way (a queued one not handed to a backend yet is judged at its own
    launch: the first in line goes first)."""
    folder = _paths(config, Path(job.output_dir), job.overrides)
    _log_file(config, log_path)
    _check_free(config, folder, jobs, job_id=job.id, wanted="train", launching=True)


def admit_export(config: Config, job: Job, export_dir: Path, jobs: Iterable[Job], log_path: Path) -> Path:
    """May `job`'s export write its merged model to `export_dir`? Returns the folder as it resolves on disk."""
    folder = confine("export_dir", export_dir, (config.output_root,), config.base_dir, root_key="paths.output_root")
    _log_file(config, log_path)
    _check_free(config, folder, jobs, job_id=job.id, wanted="export", launching=False)
    return folder


def line(
    queue: Sequence[Job | tuple[Job, Purpose]], holding: Sequence[Job], foreign: set[str]
) -> list[leases.Decision]:
    """Which queued jobs may start now on this machine's GPUs, and each waiting one's place in line. `queue` may
    hold try sessions too, `(job, "try")` (store.line): one line for trainings and tries alike."""
    return leases.plan_starts(queue, leases.held(holding), foreign)


def moved_up(before: Sequence[leases.Decision], after: Sequence[leases.Decision]) -> list[leases.Decision]:
    """The jobs still waiting whose place in line is better in `after` (one ahead of them left)."""
    was = {(d.job.id, d.purpose): d.position for d in before if not d.start}
    return [
        d
        for d in after
        if not d.start
        and d.position is not None
        and (old := was.get((d.job.id, d.purpose))) is not None
        and d.position < old
    ]


def _paths(config: Config, output_dir: Path, overrides: Mapping[str, str]) -> Path:
    folder = confine("output_dir", output_dir, (config.output_root,), config.base_dir, root_key="paths.output_root")
    for key, roots, root_key in (
        ("model", config.model_roots, "paths.model_roots"),
        ("dataset", config.data_roots, "paths.data_roots"),
    ):
        for local in _local_sources(key, overrides.get(key), config.base_dir):
            confine(key, local, roots, config.base_dir, root_key=root_key, root_itself=True)
    return folder


def _local_sources(key: str, value: str | None, base_dir: Path) -> Iterator[Path]:
    """The values of `model=` / `dataset=` that name a place on disk: stored absolute (bot/chat/sources.py resolves
    them), or a relative one that exists by now (swift would read it rather than the hub's)."""
    for item in (value or "").split(",") if key == "dataset" else [value or ""]:
        name = _SAMPLES.sub("", item.strip()) if key == "dataset" else item.strip()
        if name and (os.path.isabs(os.path.expanduser(name)) or os.path.lexists(base_dir / name)):
            yield Path(name)


def _log_file(config: Config, log_path: Path) -> None:
    confine("log", log_path, (config.log_dir,), config.base_dir, root_key="paths.log_dir")


def _check_free(
    config: Config, folder: Path, jobs: Iterable[Job], *, job_id: str | None, wanted: Purpose, launching: bool
) -> None:
    for other in jobs:
        for purpose, theirs in _writes(other, launching=launching):
            if other.id == job_id and purpose == wanted:
                continue  # itself
            real = resolved(theirs, config.base_dir)
            if real == folder or real.is_relative_to(folder) or folder.is_relative_to(real):
                raise OutputInUse(theirs, other.id, writer=purpose, wanted=wanted)


def _writes(job: Job, *, launching: bool) -> Iterator[tuple[Purpose, Path]]:
    """The folders `job` writes in, or will once it starts."""
    queued = job.state is JobState.QUEUED and (not launching or job.train_run.backend_job_id is not None)
    if job.state.is_under_way or queued:
        yield "train", Path(job.output_dir)
    if job.export_state is ExportState.EXPORTING and job.export_dir:
        yield "export", Path(job.export_dir)
