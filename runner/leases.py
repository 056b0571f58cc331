"""Who may start now: GPU leases and the first-come-first-served queue, as pure functions over jobs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from storage.models import ExportState, Job, JobState, Purpose
from storage.waiting import BehindEarlierJob, QueueReason
from storage.waiting import GpusBusy as GpusBusy  # what a job waits for, and a dry run's warning

CPU = ("cpu",)

HOLDING_STATES = frozenset({JobState.STARTING, JobState.RUNNING, JobState.STOPPING})


@dataclass(frozen=True)
class Decision:
    job: Job
    start: bool
    reason: QueueReason | None = None  # why it waits
    position: int | None = None  # its place in line for its GPUs (1 = next)
    purpose: Purpose = "train"  # what waits: the job's training, or a try session of it (runner/trying.py)


def held(jobs: Iterable[Job]) -> dict[str, str]:
    """GPU -> the job holding it, for its training, its export or a try session of it (a try on the CPU holds
    nothing). Two jobs never hold one GPU: the scheduler only leases free ones."""
    holders = {}
    for job in jobs:
        if job.state in HOLDING_STATES:
            holders.update(dict.fromkeys(job.gpus, job.id))
        if job.export_state is ExportState.EXPORTING:
            holders.update(dict.fromkeys(job.export_gpus, job.id))
        if job.try_state.holds and job.try_gpus != CPU:
            holders.update(dict.fromkeys(job.try_gpus, job.id))
    return holders


def export_gpus(
    job: Job, gpus_here: Iterable[str], holders: Mapping[str, str], foreign: set[str], queue: Sequence[Job]
) -> tuple[str, ...]:
    """Where `job`'s export runs: on the GPU it trained on (its first), where that GPU is here and free (no job
    holds it, no process of others is on it, no waiting job wants it: the export does not jump the queue); else on
    the CPU (empty). The 7B's export loads and merges in 3.5-4.1 s on an H200, 14-16 s on the CPU (docs/gpu.md)."""
    gpu = job.gpus[0] if job.gpus else "cpu"
    free = gpu in set(gpus_here) and gpu not in holders and gpu not in foreign and not any(gpu in q.gpus for q in queue)
    return (gpu,) if free else ()


def plan_starts(
    queue: Sequence[Job | tuple[Job, Purpose]], holders: Mapping[str, str], foreign: set[str]
) -> list[Decision]:
    """Walk the queue in arrival order; a job starts when all its GPUs are free and no earlier waiting job
    wants any of them (so a big job is not starved by a stream of small ones). The queue may hold try sessions
    too, `(job, "try")` (store.line): they wait in the same line for `job.try_gpus`."""
    taken = dict(holders)
    wanted: dict[str, int] = {}  # GPU -> how many earlier waiting jobs want it
    decisions = []
    for entry in queue:
        job, purpose = entry if isinstance(entry, tuple) else (entry, "train")
        gpus = job.try_gpus if purpose == "try" else job.gpus
        busy_ours = [g for g in gpus if g in taken]
        busy_foreign = [g for g in gpus if g in foreign and g not in taken]
        ahead = max((wanted.get(g, 0) for g in gpus), default=0)
        if not busy_ours and not busy_foreign and ahead == 0:
            decisions.append(Decision(job, start=True, purpose=purpose))
            for g in gpus:
                taken[g] = job.id
            continue
        reason: QueueReason = (
            GpusBusy({g: taken[g] for g in busy_ours}, tuple(busy_foreign))
            if busy_ours or busy_foreign
            else BehindEarlierJob()
        )
        decisions.append(Decision(job, start=False, reason=reason, position=ahead + 1, purpose=purpose))
        for g in gpus:
            wanted[g] = wanted.get(g, 0) + 1
    return decisions
