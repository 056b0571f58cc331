"""Why a queued job waits (`Job.queue_reason`, the `job_queued` notice): typed facts, worded by each front end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from storage.facts import FactCodec

# What went wrong asking Slurm: its command is not installed, gave no answer in time, refused (its own words in
# `reason`), or printed no job id.
SlurmProblem = Literal["missing", "timeout", "refused", "no_job_id"]


@dataclass(frozen=True)
class GpusBusy:
    """GPUs a job asked for that are in use: by our jobs (GPU -> job id), or by processes trainbot did not start."""

    held: dict[str, str] = field(default_factory=dict)
    foreign: tuple[str, ...] = ()
    code: Literal["gpus_busy"] = "gpus_busy"


@dataclass(frozen=True)
class BehindEarlierJob:
    """Its GPUs are free, but a job that came earlier waits for one of them (first come, first served)."""

    code: Literal["behind_earlier_job"] = "behind_earlier_job"


@dataclass(frozen=True)
class Submitted:
    """Handed to a scheduling backend (Slurm), which has not said more yet."""

    backend: str
    backend_job_id: str
    code: Literal["submitted"] = "submitted"


@dataclass(frozen=True)
class SlurmPending:
    """In Slurm's queue: its job state and reason code (squeue(1), "JOB REASON CODES"); `reason` is empty where
    Slurm gives none (its `None`: the scheduler has not looked at the job yet)."""

    state: str
    reason: str = ""
    gpus_per_node: int = 0
    nodes: int = 1
    code: Literal["slurm_pending"] = "slurm_pending"


@dataclass(frozen=True)
class SlurmSilent:
    """Slurm did not answer about the job (slurmctld down or slow): it most likely still waits or runs."""

    problem: SlurmProblem
    command: str = ""
    reason: str = ""  # Slurm's own words, where it said any
    code: Literal["slurm_silent"] = "slurm_silent"


@dataclass(frozen=True)
class LegacyReason:
    """A reason stored as words before the types: shown as it is."""

    text: str
    code: Literal["legacy"] = "legacy"


QueueReason = GpusBusy | BehindEarlierJob | Submitted | SlurmPending | SlurmSilent | LegacyReason

CODEC: FactCodec[QueueReason] = FactCodec(QueueReason)


def dump_reason(reason: QueueReason | None) -> str | None:
    return None if reason is None else CODEC.dump(reason)


def load_reason(text: str | None) -> QueueReason | None:
    if text is None:
        return None
    return CODEC.load(text) or LegacyReason(text)
