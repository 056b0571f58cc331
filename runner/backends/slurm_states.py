"""How Slurm's job states and pending reasons read for people; pure functions over slurm_cli's records.

Exit status of an ended job: Slurm's `ExitCode=exit:signal`, as a shell gives it (`exit`, else 128 + `signal`).
Where Slurm itself ended the job (time limit, memory limit, node failure, preemption) `RunStatus.detail` says so,
because the trainer's log does not know.
"""

from __future__ import annotations

import re
import signal

from runner.backends import RunStatus
from runner.slurm_cli import SlurmJob

JOB_NAME = re.compile(r"^trainbot-(?P<id>[^-]+)-(?P<purpose>train|export)(-[0-9a-f]+)?$")  # runner/backends/slurm.py

# Reason codes of PENDING jobs (squeue(1), "JOB REASON CODES"); the longest matching prefix wins.
_REASONS: dict[str, str] = {
    "None": "waiting for Slurm's scheduler",
    "Priority": "behind higher-priority jobs",
    "Dependency": "waiting for the jobs it depends on",
    "DependencyNeverSatisfied": "its dependency can never be met: stop it",
    "JobHeldUser": "held by its owner (scontrol release <slurm id> lets it go)",
    "JobHeldAdmin": "held by a Slurm administrator",
    "launch failed requeued held": "held after Slurm failed to launch it (ask the cluster's admins)",
    "BeginTime": "not allowed to start yet (begin time)",
    "Reservation": "waiting for its reservation",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "PartitionTimeLimit": "its time limit is above the partition's: lower [slurm] time_limit",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows: lower [slurm] nodes",
    "ReqNodeNotAvail": "the nodes it needs are down, drained or reserved",
    "Nodes_required_for_job_are_DOWN": "the nodes it needs are down, drained or reserved",
    "NodeDown": "a node it needs is down",
    "BadConstraints": "no node can meet its constraints",
    "Licenses": "waiting for licenses",
    "Cleaning": "waiting while Slurm cleans up after its previous run",
    "Prolog": "its nodes are running their prolog",
    "QOS": "over a limit of its QOS",
    "Assoc": "over a limit of its Slurm account",
}
_STATES = {"CONFIGURING": "its nodes are being set up", "REQUEUED": "requeued",
           "REQUEUE_HOLD": "requeued and held", "REQUEUE_FED": "requeued", "RESV_DEL_HOLD": "held"}


def _gpus_per_node(job: SlurmJob) -> int:
    tres = job.raw.get("TresPerNode", "") or job.raw.get("TresPerJob", "")
    m = re.search(r"gpu(?::[^:,=]+)?[:=](\d+)", tres)
    return int(m[1]) if m else 0


def describe_pending(job: SlurmJob) -> str:
    """Why a job is not running yet, e.g. "Slurm: waiting for a free GPU (Resources)"."""
    if job.state != "PENDING":
        return f"Slurm: {_STATES.get(job.state, 'waiting')} ({job.state})"
    if job.reason == "Resources":
        n, nodes = _gpus_per_node(job), int(job.raw.get("NumNodes", "1").split("-")[0] or 1)
        what = ("free CPUs or memory" if n == 0 else "a free GPU" if n == 1 and nodes == 1 else
                f"{n} free GPUs" + (f" on each of {nodes} nodes" if nodes > 1 else " on one node"))
        return f"Slurm: waiting for {what} (Resources)"
    known = [key for key in _REASONS if job.reason.startswith(key)]
    words = _REASONS[max(known, key=len)] if known else "waiting"
    return f"Slurm: {words} ({job.reason})"


def ended_status(job: SlurmJob) -> RunStatus:
    """An ended job: its exit status, and the cause in words where Slurm (not the trainer) ended it."""
    # a signal number past the real ones is Slurm's own mark (OUT_OF_MEMORY shows ExitCode=0:125)
    rc = job.exit_code or (128 + job.signal if 0 < job.signal < signal.SIGRTMAX else 0)
    nodes = job.node_list or "its node"
    match job.state:
        case "COMPLETED":
            return RunStatus(alive=False, returncode=rc)
        case "CANCELLED":  # scancel (ours, or someone's outside trainbot): a stop, not a failure
            return RunStatus(alive=False, returncode=rc or 128 + signal.SIGTERM)
        case "FAILED" if rc == 127:
            return RunStatus(alive=False, returncode=rc, detail=(
                "the job's command was not found on the compute node (exit 127): install ms-swift there, or set "
                "[swift] bin to its path on a filesystem the nodes share"))
        case "FAILED" if rc == 0:
            return RunStatus(alive=False, returncode=1, detail=(
                f"Slurm could not run the job ({job.reason}): is the log folder writable from {nodes}? "
                "slurmd's log there tells more"))
        case "FAILED":
            return RunStatus(alive=False, returncode=rc)  # the trainer's own failure: its log tells why
        case "TIMEOUT":
            limit = job.raw.get("TimeLimit", "?")
            return RunStatus(alive=False, returncode=rc or 128 + signal.SIGTERM, detail=(
                f"Slurm killed the job at its time limit ({limit}): raise [slurm] time_limit, or start it "
                "again to resume from its last checkpoint"))
        case "OUT_OF_MEMORY":
            return RunStatus(alive=False, returncode=rc or 128 + signal.SIGKILL, detail=(
                f"out of memory on the node ({nodes}): the job used more RAM than Slurm gave it; ask for more "
                "(e.g. --mem=64G in [slurm] extra_args) or lower the batch size or max_length"))
        case "NODE_FAIL":
            return RunStatus(alive=False, returncode=rc or 1, detail=(
                f"the node failed under the job ({nodes}, NODE_FAIL): start it again to resume from its last "
                "checkpoint"))
        case "PREEMPTED":
            return RunStatus(alive=False, returncode=rc or 128 + signal.SIGTERM, detail=(
                "Slurm preempted the job for a higher-priority one: start it again to resume from its last "
                "checkpoint"))
        case "BOOT_FAIL":
            return RunStatus(alive=False, returncode=rc or 1, detail=(
                f"Slurm could not boot {nodes} for the job (BOOT_FAIL): start it again; tell the cluster's "
                "admins if it repeats"))
        case "DEADLINE":
            return RunStatus(alive=False, returncode=rc or 128 + signal.SIGTERM,
                             detail="Slurm ended the job at its deadline (--deadline)")
        case _:  # SPECIAL_EXIT, REVOKED, and whatever later Slurm versions add
            return RunStatus(alive=False, returncode=rc or 1, detail=f"Slurm ended the job as {job.state}")


def expand_hostlist(hostlist: str) -> list[str]:
    """"gpu[01-03,7],cpu1" -> gpu01 gpu02 gpu03 gpu7 cpu1 (one bracket group a name, as node names have)."""
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
