"""Why a queued job waits, in words, for every front end: our GPU line, or Slurm's queue and its reason codes.

`waiting_words` matches every kind of `QueueReason` and ends in `assert_never`. Slurm's own codes are shown after
its words in parentheses, except where Slurm gives none (its `None`): nothing a person reads says `None`, `null` or
`()`.
"""

from __future__ import annotations

from typing import assert_never

from bot.words.failures import slurm_trouble
from bot.words.format import PLAIN, Format
from storage.waiting import (
    BehindEarlierJob,
    GpusBusy,
    LegacyReason,
    QueueReason,
    SlurmPending,
    SlurmSilent,
    Submitted,
)

# Reason codes of PENDING jobs (squeue(1), "JOB REASON CODES"); the longest matching prefix wins.
SLURM_REASONS: dict[str, str] = {
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
SLURM_STATES = {
    "CONFIGURING": "its nodes are being set up",
    "REQUEUED": "requeued",
    "REQUEUE_HOLD": "requeued and held",
    "REQUEUE_FED": "requeued",
    "RESV_DEL_HOLD": "held",
}
NO_REASON = ("", "None", "(null)")  # Slurm has not said why yet: its scheduler has not looked at the job


def waiting_words(reason: QueueReason, fmt: Format = PLAIN) -> str:
    """Why it waits, e.g. "GPU 0 is held by job k3x9q", "Slurm: waiting for a free GPU (Resources)"."""
    match reason:
        case GpusBusy(held=held, foreign=foreign):
            words = [f"GPU {fmt.text(g)} is held by job {fmt.text(job)}" for g, job in held.items()]
            words += [f"GPU {fmt.text(g)} is busy with a process trainbot did not start" for g in foreign]
            return "; ".join(words)
        case BehindEarlierJob():
            return "an earlier job is waiting for the same GPU"
        case Submitted(backend=backend, backend_job_id=backend_job_id):
            return f"submitted to {backend_label(backend, fmt)} as job {fmt.text(backend_job_id)}"
        case SlurmPending() as pending:
            return "Slurm: " + slurm_pending_words(pending, fmt)
        case SlurmSilent(problem=problem, command=command, reason=said):
            return slurm_trouble("Slurm does not answer", problem, said, command, fmt)
        case LegacyReason(text=text):
            return fmt.text(text)
        case _:
            assert_never(reason)


def slurm_pending_words(pending: SlurmPending, fmt: Format = PLAIN) -> str:
    if pending.state != "PENDING":
        return f"{SLURM_STATES.get(pending.state, 'waiting')} ({fmt.text(pending.state)})"
    if pending.reason in NO_REASON:
        return "waiting for Slurm's scheduler"
    if pending.reason == "Resources":
        n, nodes = pending.gpus_per_node, pending.nodes
        what = (
            "free CPUs or memory"
            if n == 0
            else "a free GPU"
            if n == 1 and nodes == 1
            else f"{n} free GPUs" + (f" on each of {nodes} nodes" if nodes > 1 else " on one node")
        )
        return f"waiting for {what} (Resources)"
    known = [key for key in SLURM_REASONS if pending.reason.startswith(key)]
    words = SLURM_REASONS[max(known, key=len)] if known else "waiting"
    return f"{words} ({fmt.text(pending.reason)})"


def backend_label(name: str, fmt: Format = PLAIN) -> str:
    return "Slurm" if name == "slurm" else fmt.text(name)
