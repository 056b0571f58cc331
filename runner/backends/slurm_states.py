"""Slurm's job states and pending reasons as the supervisor's facts; pure functions over slurm_cli's records
(bot/words/waiting.py and bot/words/failures.py word them).

Exit status of an ended job: Slurm's `ExitCode=exit:signal`, as a shell gives it (`exit`, else 128 + `signal`).
Where Slurm itself ended the job (time limit, memory limit, node failure, preemption) `RunStatus.cause` says so,
because the trainer's log does not know.
"""

from __future__ import annotations

import dataclasses
import re
import signal

from runner.backends import RunStatus
from runner.slurm_cli import SlurmJob
from storage.failure_facts import SchedulerEnded, SlurmEnd
from storage.waiting import SlurmPending

JOB_NAME = re.compile(
    r"^trainbot-(?P<id>[^-]+)-(?P<purpose>train|export|try)(-[0-9a-f]+)?$"
)  # runner/backends/slurm.py

_PENDING_STATES = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD")


def gpus_per_node(job: SlurmJob) -> int:
    tres = job.raw.get("TresPerNode", "") or job.raw.get("TresPerJob", "")
    m = re.search(r"gpu(?::[^:,=]+)?[:=](\d+)", tres)
    return int(m[1]) if m else 0


def pending(job: SlurmJob) -> SlurmPending:
    """Why a job is not running yet, as Slurm says: its state, reason code and what it asked for."""
    nodes = job.raw.get("NumNodes", "1").split("-")[0]
    return SlurmPending(job.state, job.reason, gpus_per_node(job), int(nodes) if nodes.isdigit() else 1)


def ended_status(job: SlurmJob) -> RunStatus:
    """An ended job: its exit status, and the cause where Slurm (not the trainer) ended it."""
    # a signal number past the real ones is Slurm's own mark (OUT_OF_MEMORY shows ExitCode=0:125)
    rc = job.exit_code or (128 + job.signal if 0 < job.signal < signal.SIGRTMAX else 0)

    def ended(end: SlurmEnd, returncode: int) -> RunStatus:
        cause = SchedulerEnded(
            end, job.state, job.node_list or None, job.raw.get("TimeLimit") or None, job.reason or None
        )
        return RunStatus(alive=False, returncode=returncode, cause=cause)

    match job.state:
        case "COMPLETED":
            return RunStatus(alive=False, returncode=rc)
        case "CANCELLED":  # scancel (ours, or someone's outside trainbot): a stop, not a failure
            return RunStatus(alive=False, returncode=rc or 128 + signal.SIGTERM)
        case "FAILED" if rc == 127:
            return ended(SlurmEnd.COMMAND_NOT_FOUND, rc)
        case "FAILED" if rc == 0:
            return ended(SlurmEnd.NOT_RUN, 1)
        case "FAILED":
            return RunStatus(alive=False, returncode=rc)  # the trainer's own failure: its log tells why
        case "TIMEOUT":
            return ended(SlurmEnd.TIME_LIMIT, rc or 128 + signal.SIGTERM)
        case "OUT_OF_MEMORY":
            return ended(SlurmEnd.OUT_OF_MEMORY, rc or 128 + signal.SIGKILL)
        case "NODE_FAIL":
            return ended(SlurmEnd.NODE_FAIL, rc or 1)
        case "PREEMPTED":
            return ended(SlurmEnd.PREEMPTED, rc or 128 + signal.SIGTERM)
        case "BOOT_FAIL":
            return ended(SlurmEnd.BOOT_FAIL, rc or 1)
        case "DEADLINE":
            return ended(SlurmEnd.DEADLINE, rc or 128 + signal.SIGTERM)
        case _:  # SPECIAL_EXIT, REVOKED, and whatever later Slurm versions add
            return ended(SlurmEnd.OTHER, rc or 1)


def run_status(job: SlurmJob | None) -> RunStatus:
    """Slurm's view of a job as the supervisor's: waiting (with Slurm's reason), running, or ended."""
    if job is None:  # Slurm forgot it (MinJobAge): the supervisor settles it from logging.jsonl and the log
        return RunStatus(alive=False, returncode=None)
    if job.terminal:  # with its start: a job that ran between two polls still bounds its run folder
        return dataclasses.replace(ended_status(job), started_at=job.started_at)
    if job.state in _PENDING_STATES:
        return RunStatus(alive=True, pending_reason=pending(job))
    # RUNNING, COMPLETING, SUSPENDED, STOPPED, SIGNALING, STAGE_OUT, RESIZING
    return RunStatus(alive=True, started_at=job.started_at)


def expand_hostlist(hostlist: str) -> list[str]:
    """ "gpu[01-03,7],cpu1" -> gpu01 gpu02 gpu03 gpu7 cpu1 (one bracket group a name, as node names have)."""
    names: list[str] = []
    for prefix, ranges, suffix in re.findall(r"([^,\[]+)(?:\[([^\]]*)\])?([^,\[]*)", hostlist):
        if not ranges:
            names.append(prefix + suffix)
            continue
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            for i in range(int(lo), int(hi or lo) + 1):
                names.append(f"{prefix}{i:0{len(lo)}d}{suffix}")
    return names
