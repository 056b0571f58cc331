"""Why a swift run (sft or export) failed, from its exit status and the tail of its log.

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
    cls: FailureClass
    summary: str  # one line, for people
    hint: str  # what to do about it ("" when nothing)
    detail: str  # the key error line from the log
    tail: list[str] = field(default_factory=list)  # the log's last meaningful lines


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


_Verdict = tuple[FailureClass, str, str, str]  # class, summary, hint, detail


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


_NETWORK = (r"NetworkError|ConnectionError|ConnectTimeout|ReadTimeout|NameResolutionError|Failed to resolve"
            r"|Name or service not known|Temporary failure in name resolution|Max retries exceeded"
            r"|Connection refused|Network is unreachable|_DownloadDeadlineError|\[E1001\]"
            r"|OfflineModeIsEnabled|LocalEntryNotFoundError|outgoing traffic has been disabled|timed out")
_NOT_FOUND = (r"DatasetNotFoundError|FileNotFoundError|NotExistError|doesn't exist|does not exist|not found"
              r"|\b404\b")
_MIRROR = "point the recipe to a local mirror in the config file (model/datasets) and set HF_HUB_OFFLINE=1"
_RENAMED = {f"--{old}": f"--{new}" for renames in RENAMED.values() for old, new in renames.items()}


def _stop_requested(ctx: _Ctx) -> _Verdict | None:
    interrupt = ctx.last(r"KeyboardInterrupt")
    if not ctx.stop_requested or (interrupt is None and ctx.signal is None):
        return None
    how = interrupt or _signal_name(ctx.signal)
    return FailureClass.INTERRUPTED, f"stopped on request ({how})", "", how


def _cuda_oom(ctx: _Ctx) -> _Verdict | None:
    line = ctx.last(r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory"
                    r"|CUBLAS_STATUS_ALLOC_FAILED|(?:NPU|HIP|XPU) out of memory")
    if line is None:
        return None
    wanted = re.search(r"Tried to allocate ([\d.]+ [KMGT]i?B)", line)
    return (FailureClass.CUDA_OOM, "ran out of GPU memory (CUDA OOM" + (f", tried to allocate {wanted[1]})"
                                                                         if wanted else ")"),
            "lower max_length or the batch size, or use a GPU with more memory", line)


def _disk_full(ctx: _Ctx) -> _Verdict | None:
    line = ctx.last(r"No space left on device|\bENOSPC\b|\[Errno 28\]|StorageFull|Disk quota exceeded"
                    r"|\[Errno 122\]")
    if line is None:
        return None
    where = re.search(r"(?:device|exceeded): '([^']+)'", line)
    what = "the disk quota is used up" if "quota" in line.lower() else "the disk is full"
    what += f" (writing {where[1]})" if where else " (No space left on device)"
    return (FailureClass.DISK_FULL, what, "free space where the output goes (old runs, checkpoints), lower "
            "save_total_limit, or pick another out=", line)


def _output_exists(ctx: _Ctx) -> _Verdict | None:
    line = ctx.last(r"FileExistsError")
    if line is None:
        return None
    path = re.search(r"[\x60'\"]([^\x60'\"]+)[\x60'\"] (?:already )?exists", line) or re.search(r": '([^']+)'$", line)
    return (FailureClass.OUTPUT_EXISTS, f"the output folder already exists: {path[1] if path else '?'}",
            "delete or move that folder (an earlier export made it), or export with --exist_ok true "
            "(overwrites) or another --output_dir", line)


def _bad_argument(ctx: _Ctx) -> _Verdict | None:
    line = ctx.last(r"remaining_argv: \[|error: unrecognized arguments:|error: argument -"
                    r"|error: the following arguments are required|not used by the HfArgumentParser")
    if line is None:
        return None
    flags = re.findall(r"(?<![\w-])(--?[A-Za-z][\w.-]*)", line.split(":", 1)[-1])
    flag = flags[0] if flags else None
    if flag in _RENAMED:
        hint = (f"this ms-swift renamed {flag} to {_RENAMED[flag]}: the command builder must pass "
                f"{_RENAMED[flag]} to this swift version")
    else:
        hint = "check the flag and its value against swift sft --help of the installed ms-swift version"
    return (FailureClass.BAD_ARGUMENT, f"swift rejected the argument {flag}" if flag else
            "swift rejected its arguments", hint, line)


def _network_reason(ctx: _Ctx) -> str:
    text = "\n".join(ctx.region)
    host = re.search(r"Failed to resolve '([^']+)'", text)
    for pattern, reason in (
        (r"OfflineModeIsEnabled|outgoing traffic has been disabled|HF_HUB_OFFLINE", "HF_HUB_OFFLINE is set"),
        (r"_DownloadDeadlineError|\[E1001\]", "the download deadline ran out"),
        (r"Name or service not known|name resolution|Failed to resolve|NameResolutionError",
         f"cannot resolve {host[1]}" if host else "the host name does not resolve"),
        (r"Connection refused", "connection refused"),
        (r"timed out|Timeout", "timed out"),
    ):
        if re.search(pattern, text):
            return reason
    return "network error"


def _dataset(ctx: _Ctx) -> _Verdict | None:
    failed = ctx.anywhere(r"Dataset (\S+) load failed: .*?with error: (.*)")
    if failed is None and ctx.last(r"/swift/dataset/|DatasetNotFoundError|load_dataset") is None:
        return None
    named = ctx.anywhere(r"Downloading the dataset from (\w+), dataset_id: (\S+)")
    quoted = ctx.anywhere(r"Dataset '([^']+)'")
    dataset = failed[1] if failed else named[2] if named else quoted[1] if quoted else "(unknown)"
    if (network := ctx.last(_NETWORK)) is not None:
        hub = named[1] if named else "the hub"
        return (FailureClass.HUB_UNREACHABLE,
                f"could not download dataset {dataset} from {hub} ({_network_reason(ctx)})",
                f"{_MIRROR} (if {dataset} was meant as a local path, it does not exist)", network)
    missing = ctx.last(_NOT_FOUND)
    if missing is None and failed is None:
        return None
    why = "not found" if missing or not failed else f"failed to load: {failed[2]}"
    return (FailureClass.DATASET_NOT_FOUND, f"dataset {dataset} {why}"[:200],
            "check the dataset id or path in the recipe/config: a local path must exist, a hub id must be "
            "spelled as on the hub", missing or ctx.last("load failed") or "")


def _model_hub(ctx: _Ctx) -> _Verdict | None:
    network = ctx.last(_NETWORK)
    named = ctx.anywhere(r"Downloading the model from ([\w ]+?)(?: Hub)?, model_id: (\S+)")
    if network is None or (named is None and not ctx.last(r"modelscope|huggingface|snapshot_download")):
        return None
    model = f"model {named[2]}" if named else "the model"
    reason = _network_reason(ctx)
    if reason == "HF_HUB_OFFLINE is set":
        return (FailureClass.HUB_UNREACHABLE,
                f"{model} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it",
                f"download it once where there is network, or {_MIRROR}", network)
    hub = named[1] if named else "the model hub"
    return FailureClass.HUB_UNREACHABLE, f"could not download {model} from {hub} ({reason})", _MIRROR, network


def _permission(ctx: _Ctx) -> _Verdict | None:
    if (gated := ctx.last(r"GatedRepoError|401 Client Error|403 Client Error")) is not None:
        return (FailureClass.PERMISSION_DENIED, "the hub refused access to the model (gated or private repo)",
                f"accept the model's licence on the hub and set HF_TOKEN (or MODELSCOPE_API_TOKEN), or "
                f"{_MIRROR}", gated)
    if (line := ctx.last(r"PermissionError|Permission denied|\[Errno 13\]|\bEACCES\b")) is None:
        return None
    path = re.search(r"Permission denied: '([^']+)'", line)
    return (FailureClass.PERMISSION_DENIED, "permission denied" + (f": {path[1]}" if path else ""),
            "make sure the bot's user can write the output folder and read the model and datasets", line)


def _distributed(ctx: _Ctx) -> _Verdict | None:
    if (port := ctx.last(r"EADDRINUSE|Address already in use")) is not None:
        return (FailureClass.DISTRIBUTED, "distributed start failed: the rendezvous port is in use",
                "another job uses MASTER_PORT: set a different MASTER_PORT (or wait for it to end)", port)
    line = ctx.last(r"NCCL|nccl\w*Error|DistBackendError|DistNetworkError|DistStoreError|[Gg]loo\b.*[Ee]rror"
                    r"|collective operation timeout|Rendezvous\w*Error")
    if line is None:
        return None
    backend = "NCCL" if re.search("nccl", line, re.I) else "gloo" if "loo" in line else "torch.distributed"
    return (FailureClass.DISTRIBUTED, f"distributed training failed ({backend} error)",
            "retry; if it persists check the GPUs' interconnect (NCCL_DEBUG=INFO shows more; "
            "NCCL_P2P_DISABLE=1 or NCCL_IB_DISABLE=1 work around broken P2P/InfiniBand)", line)


def _killed(ctx: _Ctx) -> _Verdict | None:
    line = ctx.last(r"^Killed\b|Signal 9 \(SIGKILL\)|exitcode\s*:\s*-9\b|is killed by signal: Killed"
                    r"|oom[-_]kill|Out Of Memory")
    if line is None and ctx.signal != signal.SIGKILL:
        return None
    who = "a DataLoader worker was" if line and "DataLoader worker" in line else "swift was"
    return (FailureClass.HOST_OOM_KILLED, f"{who} killed (SIGKILL): most likely the machine ran out of RAM",
            "lower dataloader_num_workers, the batch size or max_length, or use a machine with more RAM "
            "(dmesg | grep -i oom on the host tells for sure)", line or f"exit status {ctx.returncode}")


def _interrupted(ctx: _Ctx) -> _Verdict | None:
    line = ctx.last(r"^KeyboardInterrupt")
    if line is None and ctx.signal not in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        return None
    how = line or _signal_name(ctx.signal)
    return (FailureClass.INTERRUPTED, f"interrupted ({how}), not by a stop request from the bot",
            "someone or something outside the bot stopped it; start it again if that was not meant", how)


def _unknown(ctx: _Ctx) -> _Verdict:
    detail = ctx.last(_EXCEPTION.pattern) or (ctx.lines[-1] if ctx.lines else "")
    if ctx.stop_requested:
        return FailureClass.INTERRUPTED, "stopped on request", "", detail
    if ctx.signal is not None:
        summary = f"swift was killed by {_signal_name(ctx.signal)}"
    elif _EXCEPTION.search(detail):
        summary = f"swift failed: {detail[:160]}"
    else:
        summary = f"swift exited with status {ctx.returncode}"
    return FailureClass.UNKNOWN, summary, "read the log's tail below (or the job's whole log)", detail


_RULES: tuple[Callable[[_Ctx], _Verdict | None], ...] = (
    _stop_requested, _cuda_oom, _disk_full, _output_exists, _bad_argument, _dataset, _model_hub, _permission,
    _distributed, _killed, _interrupted,
)


def classify_text(returncode: int | None, text: str, *, stop_requested: bool = False) -> Failure:
    """Classify from the exit status and the log's tail text."""
    lines = clean_lines(text)
    ctx = _Ctx(returncode, signal_from_returncode(returncode), stop_requested, lines, _error_region(lines))
    cls, summary, hint, detail = next((v for rule in _RULES if (v := rule(ctx))), None) or _unknown(ctx)
    return Failure(cls, summary, hint, detail, lines[-TAIL_LINES:])


def with_cause(failure: Failure, cause: str) -> Failure:
    """The backend knows why it ended the job (Slurm's TIMEOUT, NODE_FAIL, ...): that beats a vague reading of
    the log; a specific one (CUDA OOM, ...) keeps its class and hint, with the backend's words as summary."""
    vague = failure.cls in (FailureClass.UNKNOWN, FailureClass.INTERRUPTED, FailureClass.HOST_OOM_KILLED)
    return replace(failure, cls=FailureClass.SCHEDULER if vague else failure.cls, summary=cause,
                   hint="" if vague else failure.hint)


def classify_failure(returncode: int | None, log_path: Path | None, *, stop_requested: bool = False,
                     tail_bytes: int = TAIL_BYTES) -> Failure:
    """Classify an ended swift run from its exit status and the last `tail_bytes` of its log."""
    text = read_log_tail(log_path, tail_bytes) if log_path is not None else ""
    return classify_text(returncode, text, stop_requested=stop_requested)
