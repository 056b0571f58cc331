"""What a Slurm cluster holds, for the `gpus` command: its nodes with their GPUs (sinfo), the jobs in its queue
(squeue) and its name (scontrol); over runner/slurm_cli.py's commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.slurm_cli import checked, set_or_empty


@dataclass(frozen=True)
class SlurmNode:
    name: str
    state: str  # idle, mixed, allocated, down, drained, ... (sinfo's long form)
    cpus: int
    cpus_alloc: int
    gres: str  # configured, e.g. "gpu:2"
    gres_used: str  # e.g. "gpu:1" or "gpu:1(IDX:0)"
    gpus: int
    gpus_used: int


@dataclass(frozen=True)
class QueuedJob:
    """One line of squeue."""

    job_id: str
    state: str
    user: str
    node_list: str  # "" while pending
    gpus_per_node: int
    nodes: int
    name: str


@dataclass(frozen=True)
class ClusterGpus:
    """The cluster's side of the `gpus` command: its nodes and the jobs in its queue (bot/ words them)."""

    nodes: tuple[SlurmNode, ...]
    jobs: tuple[QueuedJob, ...]


async def queue(*, name: str | None = None, user: str | None = None) -> list[QueuedJob]:
    """The jobs Slurm is running or holding (all users', or those with this name / of this user)."""
    argv = ["squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING", "--format=%i|%T|%u|%N|%b|%D|%j"]
    argv += [f"--name={name}"] if name else []
    argv += [f"--user={user}"] if user else []
    out = await checked(argv)
    jobs = []
    for line in out.splitlines():
        cols = line.split("|", 6)
        if len(cols) == 7 and cols[0].strip():
            job_id, state, user, node_list, tres, n_nodes, name = (c.strip() for c in cols)
            jobs.append(
                QueuedJob(
                    job_id=job_id,
                    state=state,
                    user=user,
                    node_list=set_or_empty(node_list),
                    gpus_per_node=gpu_count(tres.replace("gres:", "").replace("gres/", "")),
                    nodes=int(n_nodes) if n_nodes.isdigit() else 1,
                    name=name,
                )
            )
    return jobs


async def cluster_name() -> str:
    """ClusterName from the running Slurm config ("" when it has none)."""
    out = await checked(["scontrol", "show", "config"])
    m = re.search(r"^ClusterName\s*=\s*(\S+)", out, re.MULTILINE)
    return m[1] if m else ""


def gpu_count(gres: str) -> int:
    """Sum of gpu counts in a GRES string like "gpu:2", "gpu:a100:2(S:0-1)", "gpu:1(IDX:0),foo:3"."""
    gres = re.sub(r"\([^)]*\)", "", gres)
    return sum(int(m.group(1)) for m in re.finditer(r"(?:^|,)gpu(?::[^:,]+)*:(\d+)", gres))


async def nodes() -> list[SlurmNode]:
    """Every node with its state, CPUs and GRES (configured and in use), from sinfo."""
    fields = ["NodeList:300|", "StateLong:60|", "CPUsState:60|", "Gres:300|", "GresUsed:300|"]
    out = await checked(["sinfo", "--Node", "--noheader", f"--Format={','.join(fields)}"])
    result: dict[str, SlurmNode] = {}
    for line in out.splitlines():
        cols = [c.strip() for c in line.split("|")]
        if len(cols) < 5 or not cols[0]:
            continue
        name, state, cpu_state, gres, used = cols[:5]
        alloc, _idle, _other, total = (int(x) if x.isdigit() else 0 for x in cpu_state.split("/"))
        gres, used = set_or_empty(gres), set_or_empty(used)
        result[name] = SlurmNode(
            name=name,
            state=state,
            cpus=total,
            cpus_alloc=alloc,
            gres=gres,
            gres_used=used,
            gpus=gpu_count(gres),
            gpus_used=gpu_count(used),
        )
    return list(result.values())  # sinfo -N lists a node once per partition
