"""Where a job's processes run. The supervisor speaks to a Backend; `local` and `slurm` implement it."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from runner.command import SwiftCommand
from runner.errors import GpuMissing
from storage.failure_facts import LaunchRefusal, SchedulerEnded
from storage.models import Job, Run
from storage.models import Purpose as Purpose
from storage.waiting import QueueReason

if TYPE_CHECKING:
    from runner.slurm_cluster import ClusterGpus


@dataclass(frozen=True)
class ProcessRef:
    """Enough to find a job's process again, also from a restarted bot (an empty run: not launched yet)."""

    job_id: str
    purpose: Purpose
    run: Run = field(default_factory=Run)

    @classmethod
    def of(cls, job: Job, purpose: Purpose) -> ProcessRef:
        return cls(job.id, purpose, job.run(purpose))


@dataclass(frozen=True)
class Launched:
    pid: int | None
    proc_start_time: float | None
    host: str
    backend_job_id: str | None = None

    def run(self, log_path: Path, launch_token: str | None = None) -> Run:
        """What the job records of this launch (the host goes on the job itself)."""
        return Run(self.pid, self.proc_start_time, self.backend_job_id, str(log_path), launch_token)


def new_launch_token() -> str:
    """A launch's own mark (models.Run.launch_token), recorded before the backend is asked to start anything."""
    return secrets.token_hex(6)


@dataclass(frozen=True)
class RunStatus:
    """alive: still running (or waiting in the backend's own queue, with its reason); else how it ended, and
    `cause`, where the backend itself ended it (the trainer's log does not know)."""

    alive: bool
    returncode: int | None = None
    pending_reason: QueueReason | None = None
    cause: SchedulerEnded | None = None
    started_at: float | None = None  # epoch seconds the backend started it (Slurm's StartTime), when it says


class LaunchError(RuntimeError):
    """The process could not be started at all: `refusal` says why (a typed fact), ``detail`` what was run (for the
    job's events)."""

    def __init__(self, refusal: LaunchRefusal, *, detail: str = "") -> None:
        super().__init__(f"launch refused: {refusal}")
        self.refusal, self.detail = refusal, detail


class NotKnownYet(RuntimeError):
    """The backend cannot tell now whether a launch started (Slurm does not answer): ask again later."""


class Backend(Protocol):
    name: str
    # True when the backend picks GPUs and queues jobs itself (Slurm): the supervisor then hands every queued job
    # over at once and shows the backend's pending reason; False: the supervisor leases GPUs (local).
    schedules_gpus: bool

    async def launch(
        self, ref: ProcessRef, command: SwiftCommand, *, log_path: Path, gpus: Sequence[str]
    ) -> Launched: ...

    async def status(self, ref: ProcessRef) -> RunStatus: ...

    async def reclaim(self, ref: ProcessRef) -> Launched | None:
        """A launch of `ref.run.launch_token` that the bot began but did not see through (it died in between): what
        it started, or None when nothing was started and nothing will be (it may be launched again, under a new
        token). Raises NotKnownYet when the backend cannot tell now."""
        ...

    async def interrupt(self, ref: ProcessRef) -> bool:
        """SIGINT to the trainer itself, so swift writes its summary; False if nothing was there to signal (yet:
        the follower tries again at its next look while the job is stopping)."""
        ...

    async def terminate(self, ref: ProcessRef) -> None: ...

    async def kill(self, ref: ProcessRef) -> None: ...

    async def cluster_gpus(self) -> ClusterGpus | None:
        """The backend's own view of the GPUs (Slurm: the cluster's nodes and queue); None: the local GPU probe's."""
        ...

    async def describe_missing_gpus(self, gpus: Sequence[str]) -> GpuMissing | None:
        """Why no node of the backend's could run a job on `gpus` (None: it could, or the backend cannot tell);
        only asked of a backend that schedules GPUs itself."""
        ...

    def own_pids(self, refs: Sequence[ProcessRef]) -> set[int]:
        """Every pid of our jobs on this machine (for telling our GPU processes from foreign ones)."""
        ...
