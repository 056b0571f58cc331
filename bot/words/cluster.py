"""The `gpus` command on Slurm: the cluster's GPU nodes and who uses them, in words (runner gives the facts)."""

from __future__ import annotations

from bot.words.format import Format
from runner.backends.slurm_states import JOB_NAME, expand_hostlist
from runner.slurm_cluster import ClusterGpus, QueuedJob


def job_label(job: QueuedJob, fmt: Format) -> str:
    m = JOB_NAME.match(job.name)
    if m is None:
        return f"{fmt.text(job.user)}'s Slurm job {fmt.text(job.job_id)}"
    return fmt.code(m["id"]) + {"export": " export", "try": " try"}.get(m["purpose"], "")


def render_gpu_nodes(cluster: ClusterGpus, fmt: Format) -> str:
    """The `gpus` command on Slurm: one line a GPU node (state, GPUs in use and by whom, CPUs), then the
    jobs waiting for GPUs."""
    nodes, jobs = cluster.nodes, cluster.jobs
    gpu_nodes = [n for n in nodes if n.gpus]
    if not gpu_nodes:
        return (
            f"No GPU nodes in this Slurm cluster (no node has a {fmt.code('gpu')} GRES); "
            f"{fmt.code('gpu=cpu')} jobs still run."
        )
    gpu_jobs = [j for j in jobs if j.gpus_per_node]
    waiting = [j for j in gpu_jobs if j.state == "PENDING"]
    used, total = sum(n.gpus_used for n in gpu_nodes), sum(n.gpus for n in gpu_nodes)
    lines = [
        f"Slurm: {len(gpu_nodes)} GPU node{'s' * (len(gpu_nodes) != 1)}, {used}/{total} GPUs in use, "
        f"{len(waiting)} job{'s' * (len(waiting) != 1)} waiting for GPUs"
    ]
    for node in gpu_nodes:
        users = [
            f"{job_label(j, fmt)} ({j.gpus_per_node})"
            for j in gpu_jobs
            if j.state != "PENDING" and node.name in expand_hostlist(j.node_list)
        ]
        state = node.state + (
            " (takes no jobs)" if node.state.rstrip("*~#").startswith(("down", "drain", "fail")) else ""
        )
        lines.append(
            f"• {fmt.bold(fmt.text(node.name))} {fmt.text(state)} · GPU {node.gpus_used}/{node.gpus} in use"
            + (" by " + ", ".join(users) if users else "")
            + f" · CPU {node.cpus_alloc}/{node.cpus}"
        )
    if waiting:
        lines.append(
            "waiting: "
            + ", ".join(
                f"{job_label(j, fmt)} ({j.gpus_per_node} GPU{'s' * (j.gpus_per_node > 1)}"
                f"{f' x {j.nodes} nodes' if j.nodes > 1 else ''})"
                for j in waiting
            )
        )
    return "\n".join(lines)
