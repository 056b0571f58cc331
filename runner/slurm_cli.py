"""Asyncio client over the Slurm command line for one job (sbatch, scontrol, scancel, squeue); standard library
only. What the cluster holds (nodes, the queue, its name) is runner/slurm_cluster.py.

Works without slurmdbd/accounting: job state comes from ``scontrol show job -o``, which knows a job until
MinJobAge after its end (scripts/slurm_up.sh sets a day). Commands get argv lists, never a shell string;
batch scripts go to ``sbatch --parsable`` on stdin. The Slurm config is found the usual way (SLURM_CONF, else
/etc/slurm/slurm.conf).

Signals: ``cancel(job_id, signal="INT")`` runs ``scancel --signal=INT <id>``, which signals every process of
the job's srun step(s) (on every node) and not the batch shell; with ``batch_only=True`` only the batch shell
gets it, and a ``training_script()`` (runner/slurm_script.py) passes it on to the trainer alone. Either way the
job then ends with the trainer's exit status: COMPLETED for exit 0, FAILED for anything else; a plain
``cancel(job_id)`` (SIGTERM, SIGKILL after KillWait) is what ends a job CANCELLED.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.child_env import child_env
from runner.slurm_script import training_script as training_script  # re-exported
from runner.slurm_script import with_exports
from storage.waiting import SlurmProblem

TERMINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "SPECIAL_EXIT",
        "REVOKED",
    }
)
CLI_TIMEOUT_S = 30.0
_KEY_RE = re.compile(r"^[A-Z][A-Za-z0-9_:/]*=")  # scontrol keys: JobState=, AllocNode:Sid=, CPUs/Task=
_SIGNAL_RE = re.compile(r"^(SIG)?[A-Z0-9]+$")
_UNSET = frozenset({"", "(null)", "Unknown", "None", "N/A"})


class SlurmError(RuntimeError):
    """A Slurm command is missing, gave no answer in time, failed, or printed no job id (`problem`). ``reason``:
    Slurm's own words (its stderr less the "sbatch: error: " prefixes, or what it printed); ``command``: the
    command line; ``returncode``: its exit status, where it ended."""

    def __init__(self, problem: SlurmProblem, command: str, *, reason: str = "", returncode: int | None = None) -> None:
        super().__init__(
            f"{command}: {problem}"
            + (f" ({returncode})" if returncode is not None else "")
            + (f": {reason}" if reason else "")
        )
        self.problem, self.command, self.reason, self.returncode = problem, command, reason, returncode


def slurm_reason(stderr: str) -> str:
    """ "sbatch: error: invalid partition specified: nosuch" (and sbatch's closing line) -> "invalid partition
    specified: nosuch"."""
    lines = [re.sub(r"^\w+: (error|fatal): ", "", line.strip()) for line in stderr.splitlines()]
    lines = [line for line in lines if line]
    # sbatch's closing "Batch job submission failed: <the same in other words>" only repeats a specific line
    specific = [line for line in lines if not line.startswith("Batch job submission failed")]
    return "; ".join(specific or lines)


@dataclass(frozen=True)
class SlurmJob:
    job_id: str
    state: str  # JobState: PENDING, RUNNING, COMPLETING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    reason: str  # Resources, Priority, NonZeroExitCode, ...; "" where Slurm gives none (it prints `None`)
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

    @property
    def started_at(self) -> float | None:
        """StartTime as epoch seconds (Slurm prints this machine's local time, to the second); None when it
        has not started (a pending job's StartTime is only Slurm's estimate)."""
        if not self.start_time or self.state == "PENDING":
            return None
        try:
            return time.mktime(time.strptime(self.start_time, "%Y-%m-%dT%H:%M:%S"))
        except (ValueError, OverflowError):
            return None


async def _run(
    argv: Sequence[str], *, stdin: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[int, str, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(None) if env is None else dict(env),
        )
    except FileNotFoundError as e:
        raise SlurmError("missing", argv[0]) from e
    try:
        async with asyncio.timeout(CLI_TIMEOUT_S):
            out, err = await proc.communicate(None if stdin is None else stdin.encode())
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise SlurmError("timeout", shlex.join(argv)) from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace").strip()


async def checked(argv: Sequence[str], *, stdin: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The command's stdout; SlurmError with Slurm's reason where it fails."""
    rc, out, err = await _run(argv, stdin=stdin, env=env)
    if rc != 0:
        raise SlurmError("refused", shlex.join(argv), reason=slurm_reason(err or out), returncode=rc)
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


def set_or_empty(value: str | None) -> str:
    """ "" for a value Slurm left out or printed as unset (`(null)`, `None`, `N/A`, ...)."""
    return "" if value is None or value in _UNSET else value


def job_from_record(rec: Mapping[str, str]) -> SlurmJob:
    code, _, sig = rec.get("ExitCode", "0:0").partition(":")
    stdout = set_or_empty(rec.get("StdOut"))
    return SlurmJob(
        job_id=rec["JobId"],
        state=rec.get("JobState", "UNKNOWN"),
        reason=set_or_empty(rec.get("Reason")),
        exit_code=int(code or 0),
        signal=int(sig or 0),
        stdout_path=Path(stdout) if stdout else None,
        node_list=set_or_empty(rec.get("NodeList")),
        start_time=set_or_empty(rec.get("StartTime")),
        end_time=set_or_empty(rec.get("EndTime")),
        raw=dict(rec),
    )


async def submit(
    script: str,
    *,
    job_name: str,
    output_path: Path,
    gres_gpus: int,
    nodes: int = 1,
    partition: str | None = None,
    account: str | None = None,
    time_limit: str | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    workdir: Path | None = None,
    process_env: Mapping[str, str] | None = None,
) -> str:
    """Submit a batch script (text, via stdin); returns the job id. ``env`` is written into the script as
    shell-quoted exports (values may hold commas, quotes, newlines). sbatch's default ``--export=ALL``
    applies: the job also inherits the environment sbatch runs in, which is ``process_env`` when given (to
    keep secrets out of jobs) and else this process's. stdout and stderr both go to ``output_path``
    (``%j`` expands to the job id; a relative path is relative to ``workdir``). ``gres_gpus`` is per node."""
    if nodes < 1 or gres_gpus < 0:
        raise ValueError("nodes must be >= 1 and gres_gpus >= 0")
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name={job_name}",
        f"--output={output_path}",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
    ]
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
    out = await checked(argv, stdin=with_exports(script, env), env=process_env)
    job_id = out.strip().splitlines()[-1].split(";")[0] if out.strip() else ""
    if not job_id.isdigit():
        raise SlurmError("no_job_id", shlex.join(argv), reason=out.strip()[:200])
    return job_id


async def show_job(job_id: str | int) -> SlurmJob | None:
    """The job as ``scontrol show job -o`` sees it; None once Slurm has forgotten it (MinJobAge)."""
    argv = ["scontrol", "show", "job", "-o", str(job_id)]
    rc, out, err = await _run(argv)
    if rc != 0:
        if "Invalid job id" in err:
            return None
        raise SlurmError("refused", shlex.join(argv), reason=slurm_reason(err), returncode=rc)
    for line in out.splitlines():
        rec = parse_record(line)
        if rec.get("JobId") == str(job_id):
            return job_from_record(rec)
    return None


async def cancel(job_id: str | int, *, signal: str | None = None, batch_only: bool = False, full: bool = False) -> None:
    """Without ``signal``: ``scancel <id>`` (job ends CANCELLED; a no-op for finished or unknown jobs).
    With ``signal`` (e.g. "INT"): ``scancel --signal=INT <id>`` signals all processes of the job's steps
    (not the batch shell); ``batch_only`` adds ``--batch`` (the batch shell only), ``full`` adds ``--full``
    (the batch shell and every step). Signalling does not end the job by itself. A PENDING job has nothing
    to signal (and scancel would retry for ~70 s), so it is cancelled instead; a finished or unknown job is left
    alone."""
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
    elif full and len(argv) > 1:
        argv.append("--full")
    argv.append(str(job_id))
    rc, out, err = await _run(argv)
    if rc != 0 and not re.search(r"Invalid job id|already complet", err):
        raise SlurmError("refused", shlex.join(argv), reason=slurm_reason(err or out), returncode=rc)


async def running_steps(job_id: str | int) -> list[str]:
    """Ids of the job's srun steps ("42.0"), without its batch and extern steps; [] for a job that has not
    started its step yet (a signal sent then would be lost) or has ended."""
    rc, out, err = await _run(["squeue", "--noheader", "--steps", f"--jobs={job_id}", "--format=%i"])
    if rc != 0:
        if "Invalid job id" in err:
            return []
        raise SlurmError("refused", f"squeue --steps --jobs={job_id}", reason=slurm_reason(err), returncode=rc)
    steps = (line.strip() for line in out.splitlines())
    return [s for s in steps if s.partition(".")[2].isdigit()]


async def jobs_named(name: str, *, user: str | None = None) -> list[str]:
    """Ids of the jobs of this name that Slurm knows: waiting, running or ended within MinJobAge (squeue), else in
    its accounting (sacct), where the cluster keeps one."""
    mine = [f"--user={user}"] if user else []
    out = await checked(["squeue", "--noheader", "--states=all", f"--name={name}", "--format=%i", *mine])
    if ids := [line.strip() for line in out.splitlines() if line.strip()]:
        return ids
    if shutil.which("sacct") is None:
        return []
    argv = [
        "sacct",
        "--allocations",
        "--noheader",
        "--parsable2",
        f"--name={name}",
        "--starttime=now-30days",
        "--format=JobID",
        *mine,
    ]
    rc, out, err = await _run(argv)
    if rc != 0:
        if "accounting storage is disabled" in f"{err} {out}":
            return []
        raise SlurmError("refused", shlex.join(argv), reason=slurm_reason(err or out), returncode=rc)
    return [line.strip() for line in out.splitlines() if line.strip()]
