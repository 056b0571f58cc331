"""Why a job failed, or could not start: a typed fact for each cause (a code and its fields), worded by each front end.

runner/failures.py reads them from a swift log, runner/backends/slurm_states.py from Slurm's end of a job, and the
backends raise the launch refusals (`LaunchError`). A job keeps its `JobFailure` in its row (JSON); a row from before
the types holds words, read back as `LegacyFailure` and shown as they are.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from storage.facts import FactCodec
from storage.waiting import SlurmProblem

# ---- read from the log of swift's run -----------------------------------------------------------------------


@dataclass(frozen=True)
class Interrupted:
    """Interrupted (KeyboardInterrupt, SIGINT/SIGTERM/SIGHUP): `requested` by a stop from trainbot, or not.
    `how`: the log's line or the signal's name."""

    requested: bool
    how: str | None = None
    code: Literal["interrupted"] = "interrupted"


@dataclass(frozen=True)
class CudaOom:
    tried_to_allocate: str | None = None  # "2.00 GiB", as torch said
    code: Literal["cuda_oom"] = "cuda_oom"


@dataclass(frozen=True)
class HostOomKilled:
    """SIGKILL, most likely the kernel's OOM killer; `dataloader_worker`: a DataLoader worker was the one killed."""

    dataloader_worker: bool = False
    code: Literal["host_oom_killed"] = "host_oom_killed"


class Network(enum.StrEnum):
    """Why a hub could not be reached."""

    OFFLINE = "offline"  # HF_HUB_OFFLINE is set
    DEADLINE = "deadline"  # the download deadline ran out
    UNRESOLVED = "unresolved"  # the host name does not resolve
    REFUSED = "refused"
    TIMED_OUT = "timed_out"
    OTHER = "other"


@dataclass(frozen=True)
class HubUnreachable:
    """The model or a dataset could not be downloaded from `hub` ("ModelScope", "huggingface", None: unnamed)."""

    what: Literal["model", "dataset"]
    name: str | None = None
    hub: str | None = None
    network: Network = Network.OTHER
    host: str | None = None  # the host name that did not resolve
    code: Literal["hub_unreachable"] = "hub_unreachable"


@dataclass(frozen=True)
class DatasetNotFound:
    dataset: str | None = None
    load_error: str | None = None  # swift's words, where it failed to load (rather than to find) it
    code: Literal["dataset_not_found"] = "dataset_not_found"


@dataclass(frozen=True)
class BadArgument:
    """swift refused a flag; `renamed_to`: this ms-swift's new name for it."""

    flag: str | None = None
    renamed_to: str | None = None
    code: Literal["bad_argument"] = "bad_argument"


@dataclass(frozen=True)
class OutputExists:
    """swift export: the merged folder is already there."""

    path: str | None = None
    code: Literal["output_exists"] = "output_exists"


@dataclass(frozen=True)
class DiskFull:
    quota: bool = False  # a disk quota, rather than the disk itself
    path: str | None = None
    code: Literal["disk_full"] = "disk_full"


@dataclass(frozen=True)
class PermissionDenied:
    """The hub refused the model (`gated`), or the file system refused `path`."""

    gated: bool = False
    path: str | None = None
    code: Literal["permission_denied"] = "permission_denied"


@dataclass(frozen=True)
class Distributed:
    """torch.distributed failed: the rendezvous port was taken, or `backend` ("NCCL", "gloo", ...) erred."""

    port_in_use: bool = False
    backend: str | None = None
    code: Literal["distributed"] = "distributed"


@dataclass(frozen=True)
class Unknown:
    """None of the known causes: the last exception line, else the signal, else the exit status."""

    exception: str | None = None
    signal: str | None = None
    returncode: int | None = None
    code: Literal["unknown"] = "unknown"


# ---- told by the backend ------------------------------------------------------------------------------------


class SlurmEnd(enum.StrEnum):
    """How Slurm (not the trainer) ended a job."""

    COMMAND_NOT_FOUND = "command_not_found"  # exit 127 on the compute node
    NOT_RUN = "not_run"  # FAILED with exit 0: Slurm could not run the batch script
    TIME_LIMIT = "time_limit"
    OUT_OF_MEMORY = "out_of_memory"
    NODE_FAIL = "node_fail"
    PREEMPTED = "preempted"
    BOOT_FAIL = "boot_fail"
    DEADLINE = "deadline"
    OTHER = "other"  # SPECIAL_EXIT, REVOKED, and whatever later Slurm versions add


@dataclass(frozen=True)
class SchedulerEnded:
    """The scheduler ended the job (`state`: Slurm's own, e.g. TIMEOUT); `nodes`, `time_limit`, `reason` as Slurm
    gave them (None where it gave none)."""

    end: SlurmEnd
    state: str
    nodes: str | None = None
    time_limit: str | None = None
    reason: str | None = None
    code: Literal["scheduler"] = "scheduler"


# ---- the launch refused (runner/backends: LaunchError) ------------------------------------------------------


@dataclass(frozen=True)
class SwiftMissing:
    """The swift CLI the command starts is not on this machine."""

    command: str
    code: Literal["swift_missing"] = "swift_missing"


@dataclass(frozen=True)
class LogUnwritable:
    path: str
    error: str | None = None  # the OS's words (strerror)
    code: Literal["log_unwritable"] = "log_unwritable"


@dataclass(frozen=True)
class OutputUnwritable:
    """The output folder cannot be made (`error`: the OS's words), or is not writable by the bot's user."""

    path: str
    error: str | None = None
    created: bool = True  # False: it could not even be made
    code: Literal["output_unwritable"] = "output_unwritable"


@dataclass(frozen=True)
class SlurmRefused:
    """sbatch did not take the job: `reason` in Slurm's words; `command` what was run."""

    problem: SlurmProblem
    reason: str = ""
    command: str = ""
    code: Literal["slurm_refused"] = "slurm_refused"


@dataclass(frozen=True)
class BadEnvName:
    """The job's environment names a variable a shell cannot export (its batch script would not run)."""

    name: str
    code: Literal["bad_env_name"] = "bad_env_name"


@dataclass(frozen=True)
class PathOutsideRoot:
    """`field`'s `path` leads to `resolved` on disk, inside none of `roots` (set by the config's `root_key`)."""

    field: str
    path: str
    resolved: str
    roots: tuple[str, ...] = ()
    root_key: str = ""
    code: Literal["path_outside_root"] = "path_outside_root"


@dataclass(frozen=True)
class FolderTaken:
    """Job `job_id` writes to `output_dir` (the job's folder, or one inside the other) by the time this one starts;
    `writer`: its training, or its export."""

    output_dir: str
    job_id: str
    writer: Literal["train", "export"] = "train"
    code: Literal["folder_taken"] = "folder_taken"


@dataclass(frozen=True)
class LegacyFailure:
    """A failure stored as words before the types: shown as they are."""

    summary: str
    hint: str | None = None
    code: Literal["legacy"] = "legacy"


LogReason = (
    Interrupted
    | CudaOom
    | HostOomKilled
    | HubUnreachable
    | DatasetNotFound
    | BadArgument
    | OutputExists
    | DiskFull
    | PermissionDenied
    | Distributed
    | Unknown
)
LaunchRefusal = (
    SwiftMissing | LogUnwritable | OutputUnwritable | SlurmRefused | BadEnvName | PathOutsideRoot | FolderTaken
)
FailureReason = LogReason | SchedulerEnded | LaunchRefusal | LegacyFailure


@dataclass(frozen=True)
class JobFailure:
    """Why a job failed. `cause`: the scheduler's own end of it, where that came with a more specific reason from
    the log (a CUDA OOM reported by Slurm as FAILED, say): the scheduler's words lead, the reason's advice follows."""

    reason: Annotated[FailureReason, Field(discriminator="code")]
    cause: SchedulerEnded | None = None


CODEC: FactCodec[JobFailure] = FactCodec(JobFailure)


def dump_failure(failure: JobFailure | None) -> str | None:
    return None if failure is None else CODEC.dump(failure)


def load_failure(text: str | None) -> JobFailure | None:
    if text is None:
        return None
    return CODEC.load(text) or JobFailure(LegacyFailure(text))


def event_data(failure: JobFailure) -> dict[str, Any]:
    """An event's data that tells the failure (front ends word the event from it)."""
    return {"failure": CODEC.to_python(failure)}


def from_event_data(data: dict[str, Any]) -> JobFailure | None:
    return CODEC.from_python(data["failure"]) if "failure" in data else None
