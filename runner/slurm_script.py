"""The batch scripts trainbot gives sbatch: plain text, every value shell-quoted; standard library only.

A training job runs its command once per node in one srun step (step 0), the same shape for 1 and K nodes,
with the variables ms-swift reads to start torch.distributed across nodes.

Stopping it gently: ``scancel --batch --signal=INT <id>`` reaches only the batch shell, which passes SIGINT on
to the trainer processes of step 0 on every node (``scontrol listpids`` and their command line tell which),
as the local backend does. Signalling the whole step instead (``scancel --signal=INT <id>``, or Ctrl-C) also
hits the ``swift`` wrapper above the trainer, and the wrapper SIGKILLs its child 0.25 s later (Python's
``subprocess.run`` on KeyboardInterrupt), before swift has written its summary to logging.jsonl.

A trainer stopped that way exits non-zero (swift: 254), which Slurm would record as FAILED; once it has
ended, the batch shell cancels its own job, so the cluster's accounting says CANCELLED, as it was.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EnvNameError(ValueError):
    """`name` cannot be exported by a shell (the job's environment comes from the config)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"bad environment variable name: {name!r}")
        self.name = name


def with_exports(script: str, env: Mapping[str, str] | None) -> str:
    """Insert ``export K=V`` lines after the shebang and #SBATCH header (directives must stay first)."""
    if not env:
        return script
    for name in env:
        if not _ENV_NAME_RE.match(name):
            raise EnvNameError(name)
    exports = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    lines = script.splitlines()
    if not lines or not lines[0].startswith("#!"):
        lines.insert(0, "#!/bin/bash")
    i = 1
    while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
        i += 1
    return "\n".join([*lines[:i], *exports, *lines[i:]]) + "\n"


# Runs once per node inside the srun step. ms-swift reads NNODES/NODE_RANK/NPROC_PER_NODE/MASTER_* and
# starts torch.distributed.run; without them (one node, one GPU) it runs a single plain process, and with
# several GPUs but no NPROC_PER_NODE it would shard one model over them, hence the GPU count below.
_STEP_SCRIPT = """\
n=0
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then IFS=, read -ra _d <<< "$CUDA_VISIBLE_DEVICES"; n=${#_d[@]}
else n=${SLURM_GPUS_ON_NODE:-0}; fi
if [ "$SLURM_NNODES" -gt 1 ] || [ "$n" -gt 1 ]; then
  export NNODES="$SLURM_NNODES" NODE_RANK="$SLURM_NODEID"
  export NPROC_PER_NODE="${NPROC_PER_NODE:-$(( n > 0 ? n : 1 ))}"
fi
exec """

# Runs once per node in a step beside step 0 (--overlap): SIGINT to step 0's trainer processes there, or to
# all of step 0's processes when none matches (swift has not started its trainer yet, or it is not swift).
_RELAY_SCRIPT = """\
pids=$(scontrol listpids "$SLURM_JOB_ID.0" 2>/dev/null | awk 'NR > 1 {{print $1}}')
hit=0
for p in $pids; do
  if tr '\\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | {match}; then kill -INT "$p" 2>/dev/null && hit=1; fi
done
if [ "$hit" = 0 ]; then for p in $pids; do kill -INT "$p" 2>/dev/null; done; fi
"""


def training_script(argv: Sequence[str], *, env: Mapping[str, str], nodes: int, trainers: Sequence[str] = ()) -> str:
    """Batch script running ``argv`` once per node in srun step 0, with MASTER_ADDR = first node, MASTER_PORT
    from the job id and, for several nodes or GPUs, NNODES, NODE_RANK and NPROC_PER_NODE (GPUs in
    CUDA_VISIBLE_DEVICES) for ms-swift. ``trainers``: command-line fragments (e.g. "swift/cli/sft.py") of
    the processes a gentle stop (SIGINT to the batch shell) signals; none: all of step 0's."""
    if not argv:
        raise ValueError("empty argv")
    if nodes < 1:
        raise ValueError("nodes must be >= 1")
    match = " ".join(["grep", "-qF", *(f"-e {shlex.quote(t)}" for t in trainers)]) if trainers else "false"
    one_task_a_node = '--nodes="$SLURM_NNODES" --ntasks="$SLURM_NNODES" --ntasks-per-node=1'
    script = [
        "#!/bin/bash",
        f"#SBATCH --nodes={nodes} --ntasks-per-node=1",
        "# trainbot training job",
        'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        'export MASTER_ADDR MASTER_PORT="${MASTER_PORT:-$(( 20000 + SLURM_JOB_ID % 10000 ))}"',
        "interrupted=0 stopped=0",
        f"relay_int() {{ interrupted=1 stopped=1; srun --overlap {one_task_a_node} "
        f"bash -c {shlex.quote(_RELAY_SCRIPT.format(match=match))}; }}",
        "trap relay_int INT",
        # --whole: the step gets all CPUs/GPUs the job holds on each node (a step defaults to 1 CPU a task)
        f"srun --export=ALL --kill-on-bad-exit=1 --whole {one_task_a_node} "
        f"bash -c {shlex.quote(_STEP_SCRIPT + shlex.join(argv))} &",
        "step=$!",
        # `wait` returns early when the trap runs: wait again for step 0's own status (127: it was already
        # waited for, the INT came after its end)
        'wait "$step"; rc=$?',
        'while [ "$interrupted" = 1 ]; do interrupted=0; wait "$step"; r=$?; [ "$r" = 127 ] || rc=$r; done',
        'if [ "$stopped" = 1 ]; then',
        '  echo "[trainbot] stopped: the trainer exited $rc; the Slurm job ends as CANCELLED"',
        '  scancel "$SLURM_JOB_ID"; sleep 60',  # scancel's SIGTERM ends this shell; the sleep waits for it
        "fi",
        'exit "$rc"',
    ]
    return with_exports("\n".join(script), env)


def try_script(argv: Sequence[str], *, stdin: Path, stdout: Path, env: Mapping[str, str]) -> str:
    """Batch script of a try (runner/try_slurm.py): ``argv`` once, in the batch step, its stdin from the requests
    file and its stdout to the answers file (its stderr goes where sbatch's ``--output`` says: the try's log)."""
    if not argv:
        raise ValueError("empty argv")
    script = [
        "#!/bin/bash",
        "#SBATCH --nodes=1 --ntasks-per-node=1",
        "# trainbot try: its questions on stdin, its answers on stdout",
        f"exec {shlex.join(argv)} <{shlex.quote(str(stdin))} >{shlex.quote(str(stdout))}",
    ]
    return with_exports("\n".join(script), env)
