"""Asyncio client over the Slurm command line (sbatch, scontrol, scancel, sinfo); standard library only.

Works without slurmdbd/accounting: job state comes from ``scontrol show job -o``, which knows a job until
MinJobAge after its end (scripts/slurm_up.sh sets a day). Commands get argv lists, never a shell string;
batch scripts go to ``sbatch --parsable`` on stdin. The Slurm config is found the usual way (SLURM_CONF, else
/etc/slurm/slurm.conf).

Stopping a training job gently: ``cancel(job_id, signal="INT")`` runs ``scancel --signal=INT <id>``, which
signals every process of the job's srun step(s) (the trainer and its workers, on every node) and not the
batch shell. ``training_script()`` runs the trainer in such a step. The job then ends with the trainer's exit
status: COMPLETED for exit 0, FAILED for anything else; a plain ``cancel(job_id)`` (SIGTERM, SIGKILL after
KillWait) is what ends a job CANCELLED.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TERMINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
    "DEADLINE", "SPECIAL_EXIT", "REVOKED",
})
CLI_TIMEOUT_S = 30.0
_KEY_RE = re.compile(r"^[A-Z][A-Za-z0-9_:/]*=")  # scontrol keys: JobState=, AllocNode:Sid=, CPUs/Task=
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIGNAL_RE = re.compile(r"^(SIG)?[A-Z0-9]+$")
_UNSET = frozenset({"", "(null)", "Unknown", "None", "N/A"})


class SlurmError(RuntimeError):
    """A Slurm command failed (message holds its stderr) or is missing."""


@dataclass(frozen=True)
class SlurmJob:
    job_id: str
    state: str  # JobState: PENDING, RUNNING, COMPLETING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    reason: str  # Resources, Priority, NonZeroExitCode, None, ...
    exit_code: int  # of the batch script (ExitCode=exit:signal)
    signal: int  # that killed the batch script, 0 if none
    stdout_path: Path | None
    node_list: str  # "" while pending
    start_time: str  # ISO-like local time as Slurm prints it, "" when unknown
    end_time: str
    raw: dict[str, str] = field(repr=False)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


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


async def _run(argv: Sequence[str], *, stdin: str | None = None) -> tuple[int, str, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError as e:
        raise SlurmError(f"{argv[0]}: command not found (is Slurm installed?)") from e
    try:
        async with asyncio.timeout(CLI_TIMEOUT_S):
            out, err = await proc.communicate(None if stdin is None else stdin.encode())
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise SlurmError(f"{shlex.join(argv)}: no answer in {CLI_TIMEOUT_S:.0f} s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace").strip()


async def _check(argv: Sequence[str], *, stdin: str | None = None) -> str:
    rc, out, err = await _run(argv, stdin=stdin)
    if rc != 0:
        raise SlurmError(f"{shlex.join(argv)} failed ({rc}): {err or out.strip()}")
    return out


def parse_record(line: str) -> dict[str, str]:
    """One ``scontrol show ... -o`` line as a dict. Values may contain spaces (JobName, OS, Command,
    StdOut paths): a token that does not start with ``Key=`` belongs to the previous value."""
    rec: dict[str, str] = {}
    key: str | None = None
    for tok in line.strip().split(" "):
        if _KEY_RE.match(tok):
            key, _, value = tok.partition("=")
            rec[key] = value
        elif key is not None:
            rec[key] += " " + tok
    return {k: v.strip() for k, v in rec.items()}


def _opt(value: str | None) -> str:
    return "" if value is None or value in _UNSET else value


def job_from_record(rec: Mapping[str, str]) -> SlurmJob:
    code, _, sig = rec.get("ExitCode", "0:0").partition(":")
    stdout = _opt(rec.get("StdOut"))
    return SlurmJob(
        job_id=rec["JobId"], state=rec.get("JobState", "UNKNOWN"), reason=rec.get("Reason", "None"),
        exit_code=int(code or 0), signal=int(sig or 0), stdout_path=Path(stdout) if stdout else None,
        node_list=_opt(rec.get("NodeList")), start_time=_opt(rec.get("StartTime")),
        end_time=_opt(rec.get("EndTime")), raw=dict(rec))


def _with_exports(script: str, env: Mapping[str, str] | None) -> str:
    """Insert ``export K=V`` lines after the shebang and #SBATCH header (directives must stay first)."""
    if not env:
        return script
    for name in env:
        if not _ENV_NAME_RE.match(name):
            raise ValueError(f"bad environment variable name: {name!r}")
    exports = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    lines = script.splitlines()
    if not lines or not lines[0].startswith("#!"):
        lines.insert(0, "#!/bin/bash")
    i = 1
    while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
        i += 1
    return "\n".join([*lines[:i], *exports, *lines[i:]]) + "\n"


async def submit(script: str, *, job_name: str, output_path: Path, gres_gpus: int, nodes: int = 1,
                 partition: str | None = None, account: str | None = None, time_limit: str | None = None,
                 extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 workdir: Path | None = None) -> str:
    """Submit a batch script (text, via stdin); returns the job id. ``env`` is written into the script as
    shell-quoted exports (values may hold commas, quotes, newlines). sbatch's default ``--export=ALL``
    applies: the job also inherits this process's environment. stdout and stderr both go to ``output_path``
    (``%j`` expands to the job id; a relative path is relative to ``workdir``). ``gres_gpus`` is per node."""
    if nodes < 1 or gres_gpus < 0:
        raise ValueError("nodes must be >= 1 and gres_gpus >= 0")
    argv = ["sbatch", "--parsable", f"--job-name={job_name}", f"--output={output_path}",
            f"--nodes={nodes}", "--ntasks-per-node=1"]
    if gres_gpus:
        argv.append(f"--gres=gpu:{gres_gpus}")
    if partition:
        argv.append(f"--partition={partition}")
    if account:
        argv.append(f"--account={account}")
    if time_limit:
        argv.append(f"--time={time_limit}")
    if workdir is not None:
        argv.append(f"--chdir={workdir}")
    argv.extend(extra_args)
    out = await _check(argv, stdin=_with_exports(script, env))
    job_id = out.strip().splitlines()[-1].split(";")[0] if out.strip() else ""
    if not job_id.isdigit():
        raise SlurmError(f"sbatch printed no job id: {out!r}")
    return job_id


async def show_job(job_id: str | int) -> SlurmJob | None:
    """The job as ``scontrol show job -o`` sees it; None once Slurm has forgotten it (MinJobAge)."""
    rc, out, err = await _run(["scontrol", "show", "job", "-o", str(job_id)])
    if rc != 0:
        if "Invalid job id" in err:
            return None
        raise SlurmError(f"scontrol show job {job_id} failed ({rc}): {err}")
    for line in out.splitlines():
        rec = parse_record(line)
        if rec.get("JobId") == str(job_id):
            return job_from_record(rec)
    return None


async def cancel(job_id: str | int, *, signal: str | None = None, batch_only: bool = False) -> None:
    """Without ``signal``: ``scancel <id>`` (job ends CANCELLED; a no-op for finished or unknown jobs).
    With ``signal`` (e.g. "INT"): ``scancel --signal=INT <id>`` signals all processes of the job's steps
    (not the batch shell); ``batch_only`` adds ``--batch`` (the batch shell only). Signalling does not end
    the job by itself. A PENDING job has nothing to signal (and scancel would retry for ~70 s), so it is
    cancelled instead; a finished or unknown job is left alone."""
    argv = ["scancel"]
    if signal is not None:
        if not _SIGNAL_RE.match(signal):
            raise ValueError(f"bad signal name: {signal!r}")
        job = await show_job(job_id)
        if job is None or job.terminal:
            return
        if job.state == "PENDING":
            batch_only = False
        else:
            argv.append(f"--signal={signal}")
    if batch_only:
        argv.append("--batch")
    argv.append(str(job_id))
    rc, out, err = await _run(argv)
    if rc != 0 and not re.search(r"Invalid job id|already complet", err):
        raise SlurmError(f"{shlex.join(argv)} failed ({rc}): {err or out.strip()}")


def _gpu_count(gres: str) -> int:
    """Sum of gpu counts in a GRES string like "gpu:2", "gpu:a100:2(S:0-1)", "gpu:1(IDX:0),foo:3"."""
    gres = re.sub(r"\([^)]*\)", "", gres)
    return sum(int(m.group(1)) for m in re.finditer(r"(?:^|,)gpu(?::[^:,]+)*:(\d+)", gres))


async def nodes() -> list[SlurmNode]:
    """Every node with its state, CPUs and GRES (configured and in use), from sinfo."""
    fields = ["NodeList:300|", "StateLong:60|", "CPUsState:60|", "Gres:300|", "GresUsed:300|"]
    out = await _check(["sinfo", "--Node", "--noheader", f"--Format={','.join(fields)}"])
    result: dict[str, SlurmNode] = {}
    for line in out.splitlines():
        cols = [c.strip() for c in line.split("|")]
        if len(cols) < 5 or not cols[0]:
            continue
        name, state, cpu_state, gres, used = cols[:5]
        alloc, _idle, _other, total = (int(x) if x.isdigit() else 0 for x in cpu_state.split("/"))
        gres, used = _opt(gres), _opt(used)
        result[name] = SlurmNode(name=name, state=state, cpus=total, cpus_alloc=alloc, gres=gres,
                                 gres_used=used, gpus=_gpu_count(gres), gpus_used=_gpu_count(used))
    return list(result.values())  # sinfo -N lists a node once per partition


# Runs once per node inside the srun step. ms-swift reads NNODES/NODE_RANK/NPROC_PER_NODE/MASTER_* and
# starts torch.distributed.run; without them (one node, one GPU) it runs a single plain process, and with
# several GPUs but no NPROC_PER_NODE it would shard one model over them, hence the GPU count below.
_STEP = """\
n=0
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then IFS=, read -ra _d <<< "$CUDA_VISIBLE_DEVICES"; n=${#_d[@]}
else n=${SLURM_GPUS_ON_NODE:-0}; fi
if [ "$SLURM_NNODES" -gt 1 ] || [ "$n" -gt 1 ]; then
  export NNODES="$SLURM_NNODES" NODE_RANK="$SLURM_NODEID"
  export NPROC_PER_NODE="${NPROC_PER_NODE:-$(( n > 0 ? n : 1 ))}"
fi
exec """


def training_script(argv: Sequence[str], *, env: Mapping[str, str], nodes: int) -> str:
    """Batch script running ``argv`` once per node in one srun step (same shape for 1 and K nodes), with
    MASTER_ADDR = first node, MASTER_PORT from the job id and, for several nodes or GPUs, NNODES, NODE_RANK
    and NPROC_PER_NODE (GPUs in CUDA_VISIBLE_DEVICES) for ms-swift. Stop it with cancel(id, signal="INT")."""
    if not argv:
        raise ValueError("empty argv")
    if nodes < 1:
        raise ValueError("nodes must be >= 1")
    step = _STEP + shlex.join(argv)
    return _with_exports("\n".join([
        "#!/bin/bash",
        f"#SBATCH --nodes={nodes} --ntasks-per-node=1",
        "# trainbot training job",
        'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        'export MASTER_ADDR MASTER_PORT="${MASTER_PORT:-$(( 20000 + SLURM_JOB_ID % 10000 ))}"',
        # --whole: the step gets all CPUs/GPUs the job holds on each node (a step defaults to 1 CPU a task)
        'exec srun --export=ALL --kill-on-bad-exit=1 --whole --nodes="$SLURM_NNODES" '
        f'--ntasks="$SLURM_NNODES" --ntasks-per-node=1 bash -c {shlex.quote(step)}',
    ]), env)
