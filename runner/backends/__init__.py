"""Where a job's processes run. The supervisor speaks to a Backend; `local` and `slurm` implement it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from runner.command import SwiftCommand

Purpose = Literal["train", "export"]

# Never handed to a job: the bot's own credentials (Slack tokens and signing secret, the HTTP API's tokens, the
# web sessions' signing key).
SECRET_PREFIXES = ("SLACK_", "TRAINBOT_API_TOKENS", "TRAINBOT_SESSION_SECRET")


def without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith(SECRET_PREFIXES)}


@dataclass(frozen=True)
class ProcessRef:
    """Enough to find a job's process again, also from a restarted bot."""

    job_id: str
    purpose: Purpose
    pid: int | None = None
    proc_start_time: float | None = None
    backend_job_id: str | None = None


@dataclass(frozen=True)
class Launched:
    pid: int | None
    proc_start_time: float | None
    host: str
    backend_job_id: str | None = None


@dataclass(frozen=True)
class RunStatus:
    """alive: still running (or waiting in the backend's own queue, with its reason); else how it ended."""

    alive: bool
    returncode: int | None = None
    pending_reason: str | None = None
    detail: str | None = None


class LaunchError(RuntimeError):
    """The process could not be started at all; the message says why in words a person can act on."""


class Backend(Protocol):
    name: str
    # True when the backend picks GPUs and queues jobs itself (Slurm): the supervisor then hands every queued job
    # over at once and shows the backend's pending reason; False: the supervisor leases GPUs (local).
    schedules_gpus: bool

    async def launch(self, ref: ProcessRef, command: SwiftCommand, *, log_path: Path,
                     gpus: Sequence[str]) -> Launched: ...

    async def status(self, ref: ProcessRef) -> RunStatus: ...

    async def interrupt(self, ref: ProcessRef) -> bool:
        """SIGINT to the trainer itself, so swift writes its summary; False if nothing was there to signal."""
        ...

    async def terminate(self, ref: ProcessRef) -> None: ...

    async def kill(self, ref: ProcessRef) -> None: ...

    async def describe_gpus(self) -> str | None:
        """The backend's own view of the GPUs (Slurm: the cluster's nodes); None: the local GPU probe's."""
        ...

    def own_pids(self, refs: Sequence[ProcessRef]) -> set[int]:
        """Every pid of our jobs on this machine (for telling our GPU processes from foreign ones)."""
        ...
