"""Why a swift run (sft or export) failed, from its exit status and the tail of its log, as a typed fact
(storage/failure_facts.py); bot/words/failures.py words it.

Rules run from the most specific to the least and the first match wins. They look at the "error region": the
tail's [ERROR lines plus everything from its first traceback on (its last 40 lines when there is none), so a
harmless warning earlier in the log does not decide the class.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from runner.log_tail import TAIL_BYTES, clean_lines, read_log_tail
from runner.swift_version import RENAMED
from storage.failure_facts import (
    BadArgument,
    CudaOom,
    DatasetNotFound,
    DiskFull,
    Distributed,
    HostOomKilled,
    HubUnreachable,
    Interrupted,
    JobFailure,
    LogReason,
    Network,
    OutputExists,
    PermissionDenied,
    SchedulerEnded,
    Unknown,
)

_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)\b:?|^Killed\b")

TAIL_LINES = 15


class FailureClass(StrEnum):
    CUDA_OOM = "cuda_oom"
    HOST_OOM_KILLED = "host_oom_killed"
    HUB_UNREACHABLE = "hub_unreachable"
    DATASET_NOT_FOUND = "dataset_not_found"
    BAD_ARGUMENT = "bad_argument"
    OUTPUT_EXISTS = "output_exists"  # swift export: the merged folder is already there
    DISK_FULL = "disk_full"
    PERMISSION_DENIED = "permission_denied"
    DISTRIBUTED = "distributed"
    INTERRUPTED = "interrupted"  # stopped (KeyboardInterrupt, SIGINT/SIGTERM): not a failure
    SCHEDULER = "scheduler"  # the scheduler ended it (Slurm: time limit, node failure, preemption, memory)
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Failure:
    """What the log and exit status say: the reason (a typed fact), the key error line and the log's last lines.
    `cause`: the scheduler's own end of the job, where it came with a more specific reason (`with_cause`)."""

    reason: LogReason | SchedulerEnded
    detail: str  # the key error line from the log
    tail: list[str] = field(default_factory=list)  # the log's last meaningful lines
    cause: SchedulerEnded | None = None

    @property
    def cls(self) -> FailureClass:
        return FailureClass(self.reason.code)

    @property
    def facts(self) -> JobFailure:
        """What a job keeps of it (no log lines)."""
        return JobFailure(self.reason, self.cause)


@dataclass(frozen=True)
class _Ctx:
    returncode: int | None
    signal: int | None
    stop_requested: bool
    lines: list[str]  # the whole tail, cleaned
    region: list[str]  # the error region

    def last(self, pattern: str) -> str | None:
        """The last line of the error region that matches."""
        rx = re.compile(pattern)
        return next((line for line in reversed(self.region) if rx.search(line)), None)

    def anywhere(self, pattern: str) -> re.Match[str] | None:
        """The last match in the whole tail (context: which model, which dataset)."""
        rx = re.compile(pattern)
        return next((m for line in reversed(self.lines) if (m := rx.search(line))), None)


_Verdict = tuple[LogReason, str]  # the reason, and the key error line


def _error_region(lines: list[str]) -> list[str]:
    start = next((i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line), None)
    if start is None:
        return lines[-40:]
    return [line for line in lines[:start] if line.startswith("[ERROR")] + lines[start:]


def signal_from_returncode(returncode: int | None) -> int | None:
    """The signal that ended the run: Popen's -N, a shell's 128+N, or the swift wrapper's 256-N."""
    if returncode is None or returncode == 0:
        return None
    if returncode < 0:
        return -returncode
    if 128 < returncode < 160:
        return returncode - 128
    return 256 - returncode if 256 - returncode in (2, 6, 9, 11, 15) else None


def _signal_name(signum: int | None) -> str:
    try:
        return signal.Signals(signum or 0).name
    except ValueError:
        return f"signal {signum}"


_NETWORK_RE = (
    r"NetworkError|ConnectionError|ConnectTimeout|ReadTimeout|NameResolutionError|Failed to resolve"
    r"|Name or service not known|Temporary failure in name resolution|Max retries exceeded"
    r"|Connection refused|Network is unreachable|_DownloadDeadlineError|\[E1001\]"
    r"|OfflineModeIsEnabled|LocalEntryNotFoundError|outgoing traffic has been disabled|timed out"
)
_NOT_FOUND_RE = (
    r"DatasetNotFoundError|FileNotFoundError|NotExistError|doesn't exist|does not exist|not found"
    r"|\b404\b"
)
_NETWORK_CAUSES_RE: tuple[tuple[str, Network], ...] = (
    (r"OfflineModeIsEnabled|outgoing traffic has been disabled|HF_HUB_OFFLINE", Network.OFFLINE),
    (r"_DownloadDeadlineError|\[E1001\]", Network.DEADLINE),
    (r"Name or service not known|name resolution|Failed to resolve|NameResolutionError", Network.UNRESOLVED),
    (r"Connection refused", Network.REFUSED),
    (r"timed out|Timeout", Network.TIMED_OUT),
)
_RENAMED = {f"--{old}": f"--{new}" for renames in RENAMED.values() for old, new in renames.items()}


def _stop_requested(ctx: _Ctx) -> _Verdict | None:
    interrupt = ctx.last(r"KeyboardInterrupt")
    if not ctx.stop_requested or (interrupt is None and ctx.signal is None):
        return None
    how = interrupt or _signal_name(ctx.signal)
    return Interrupted(requested=True, how=how), how


def _cuda_oom(ctx: _Ctx) -> _Verdict | None:
    line = ctx.last(
        r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory"
        r"|CUBLAS_STATUS_ALLOC_FAILED|(?:NPU|HIP|XPU) out of memory"
    )
    if line is None:
        return None
    wanted = re.search(r"Tried to allocate ([\d.]+ [KMGT]i?B)", line)
    return CudaOom(tried_to_allocate=wanted[1] if wanted else None), line


def _disk_full(ctx: _Ctx) -> _Verdict | None:
    line = ctx.last(
        r"No space left on device|\bENOSPC\b|\[Errno 28\]|StorageFull|Disk quota exceeded"
        r"|\[Errno 122\]"
    )
    if line is None:
        return None
    where = re.search(r"(?:device|exceeded): '([^']+)'", line)
    return DiskFull(quota="quota" in line.lower(), path=where[1] if where else None), line


def _output_exists(ctx: _Ctx) -> _Verdict | None:
    line = ctx.last(r"FileExistsError")
    if line is None:
        return None
    path = re.search(r"[\x60'\"]([^\x60'\"]+)[\x60'\"] (?:already )?exists", line) or re.search(r": '([^']+)'$", line)
    return OutputExists(path=path[1] if path else None), line


def _bad_argument(ctx: _Ctx) -> _Verdict | None:
    line = ctx.last(
        r"remaining_argv: \[|error: unrecognized arguments:|error: argument -"
        r"|error: the following arguments are required|not used by the HfArgumentParser"
    )
    if line is None:
        return None
    flags = re.findall(r"(?<![\w-])(--?[A-Za-z][\w.-]*)", line.split(":", 1)[-1])
    flag = flags[0] if flags else None
    return BadArgument(flag=flag, renamed_to=_RENAMED.get(flag or "")), line


def _network(ctx: _Ctx) -> tuple[Network, str | None]:
    """Why the hub was out of reach, and the host name that did not resolve (where one did not)."""
    text = "\n".join(ctx.region)
    host = re.search(r"Failed to resolve '([^']+)'", text)
    cause = next((cause for pattern, cause in _NETWORK_CAUSES_RE if re.search(pattern, text)), Network.OTHER)
    return cause, host[1] if host and cause is Network.UNRESOLVED else None


def _dataset(ctx: _Ctx) -> _Verdict | None:
    failed = ctx.anywhere(r"Dataset (\S+) load failed: .*?with error: (.*)")
    if failed is None and ctx.last(r"/swift/dataset/|DatasetNotFoundError|load_dataset") is None:
        return None
    named = ctx.anywhere(r"Downloading the dataset from (\w+), dataset_id: (\S+)")
    quoted = ctx.anywhere(r"Dataset '([^']+)'")
    dataset = failed[1] if failed else named[2] if named else quoted[1] if quoted else None
    if (network := ctx.last(_NETWORK_RE)) is not None:
        cause, host = _network(ctx)
        return HubUnreachable("dataset", dataset, named[1] if named else None, cause, host), network
    missing = ctx.last(_NOT_FOUND_RE)
    if missing is None and failed is None:
        return None
    load_error = None if missing or not failed else failed[2][:200]
    return DatasetNotFound(dataset, load_error), missing or ctx.last("load failed") or ""


def _model_hub(ctx: _Ctx) -> _Verdict | None:
    network = ctx.last(_NETWORK_RE)
    named = ctx.anywhere(r"Downloading the model from ([\w ]+?)(?: Hub)?, model_id: (\S+)")
    if network is None or (named is None and not ctx.last(r"modelscope|huggingface|snapshot_download")):
        return None
    cause, host = _network(ctx)
    return HubUnreachable("model", named[2] if named else None, named[1] if named else None, cause, host), network


def _permission(ctx: _Ctx) -> _Verdict | None:
    if (gated := ctx.last(r"GatedRepoError|401 Client Error|403 Client Error")) is not None:
        return PermissionDenied(gated=True), gated
    if (line := ctx.last(r"PermissionError|Permission denied|\[Errno 13\]|\bEACCES\b")) is None:
        return None
    path = re.search(r"Permission denied: '([^']+)'", line)
    return PermissionDenied(path=path[1] if path else None), line


def _distributed(ctx: _Ctx) -> _Verdict | None:
    if (port := ctx.last(r"EADDRINUSE|Address already in use")) is not None:
        return Distributed(port_in_use=True), port
    line = ctx.last(
        r"NCCL|nccl\w*Error|DistBackendError|DistNetworkError|DistStoreError|[Gg]loo\b.*[Ee]rror"
        r"|collective operation timeout|Rendezvous\w*Error"
    )
    if line is None:
        return None
    backend = "NCCL" if re.search("nccl", line, re.I) else "gloo" if "loo" in line else "torch.distributed"
    return Distributed(backend=backend), line


def _killed(ctx: _Ctx) -> _Verdict | None:
    line = ctx.last(
        r"^Killed\b|Signal 9 \(SIGKILL\)|exitcode\s*:\s*-9\b|is killed by signal: Killed"
        r"|oom[-_]kill|Out Of Memory"
    )
    if line is None and ctx.signal != signal.SIGKILL:
        return None
    worker = bool(line and "DataLoader worker" in line)
    return HostOomKilled(dataloader_worker=worker), line or f"exit status {ctx.returncode}"


def _interrupted(ctx: _Ctx) -> _Verdict | None:
    line = ctx.last(r"^KeyboardInterrupt")
    if line is None and ctx.signal not in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        return None
    how = line or _signal_name(ctx.signal)
    return Interrupted(requested=False, how=how), how


def _unknown(ctx: _Ctx) -> _Verdict:
    detail = ctx.last(_EXCEPTION.pattern) or (ctx.lines[-1] if ctx.lines else "")
    if ctx.stop_requested:
        return Interrupted(requested=True), detail
    if ctx.signal is not None:
        return Unknown(signal=_signal_name(ctx.signal), returncode=ctx.returncode), detail
    if _EXCEPTION.search(detail):
        return Unknown(exception=detail[:160], returncode=ctx.returncode), detail
    return Unknown(returncode=ctx.returncode), detail


_RULES: tuple[Callable[[_Ctx], _Verdict | None], ...] = (
    _stop_requested,
    _cuda_oom,
    _disk_full,
    _output_exists,
    _bad_argument,
    _dataset,
    _model_hub,
    _permission,
    _distributed,
    _killed,
    _interrupted,
)


def classify_text(returncode: int | None, text: str, *, stop_requested: bool = False) -> Failure:
    """Classify from the exit status and the log's tail text."""
    lines = clean_lines(text)
    ctx = _Ctx(returncode, signal_from_returncode(returncode), stop_requested, lines, _error_region(lines))
    reason, detail = next((v for rule in _RULES if (v := rule(ctx))), None) or _unknown(ctx)
    return Failure(reason, detail, lines[-TAIL_LINES:])


def with_cause(failure: Failure, cause: SchedulerEnded) -> Failure:
    """The backend knows why it ended the job (Slurm's TIMEOUT, NODE_FAIL, ...): that beats a vague reading of
    the log; a specific one (CUDA OOM, ...) keeps its reason and its advice, with the backend's cause leading."""
    if isinstance(failure.reason, Unknown | Interrupted | HostOomKilled | SchedulerEnded):
        return replace(failure, reason=cause, cause=None)
    return replace(failure, cause=cause)


def classify_failure(
    returncode: int | None, log_path: Path | None, *, stop_requested: bool = False, tail_bytes: int = TAIL_BYTES
) -> Failure:
    """Classify an ended swift run from its exit status and the last `tail_bytes` of its log."""
    text = read_log_tail(log_path, tail_bytes) if log_path is not None else ""
    return classify_text(returncode, text, stop_requested=stop_requested)
