"""The process that stands between the bot and `swift`: it records swift's exit status in a file.

The bot may die (even by SIGKILL) while training goes on; a restarted bot is no longer the parent and cannot
read the exit status. This small launcher leads the job's process group, ignores the group-wide SIGINT/SIGTERM
of a stop (so it outlives swift and can write down how swift ended), and writes `{"returncode": N}` atomically.

    python -m runner.launcher --exit-file F -- swift sft ...
    python -m runner.launcher --warm -- python runner/swift_entry.py --warm

With `--warm` (runner/warm.py) the command is a process that imports swift and waits for a job; the launcher
waits for the job on its own stdin, one JSON line ``{"exit_file": F, "job": {...}}``, hands ``job`` to that process
(or, if it is gone, starts ``job["argv"]`` afresh), and from then on is the launcher above. Its stdin closed
before any job came: it closes the warm process's too, and both leave.

The exit file is the launch's claim too: before it starts anything the launcher creates it, in one step and only
if it is not there yet, holding its own pid and start time. A restarted bot that finds a launch recorded but no
process of it (it died mid-launch) makes the same file first if it can (`give_up`): then this launcher starts
nothing, and the bot may launch the job again; if it cannot, the launcher's claim names the process to follow.
Either way one launch starts its command at most once (runner/launches.py).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIVEN_UP = "[trainbot] this launch was given up by a restarted bot before it began: nothing started"


@dataclass(frozen=True)
class Claim:
    """What a launch's exit file says: the launcher that claimed it (None: a restarted bot gave it up first) and,
    once its command has ended, that command's exit status."""

    pid: int | None
    started: float | None  # the launcher's start time (psutil's create_time): a reused pid is not taken for it
    returncode: int | None = None


def claim(path: Path) -> Claim | None:
    """Take this launch for this process before anything is started; None: it was given up (nothing may start)."""
    mine = Claim(os.getpid(), _start_time())
    return mine if _create(path, mine) else None


def give_up(path: Path) -> bool:
    """The bot's side: True, this launch never started its command and never will; False, its launcher claimed it
    first (read_claim says which process that is)."""
    return _create(path, Claim(None, None))


def read_claim(path: Path) -> Claim | None:
    try:
        data = json.loads(path.read_text())
        return Claim(data.get("pid"), data.get("started"), data.get("returncode"))
    except (OSError, ValueError, AttributeError):
        return None


def write_exit_file(path: Path, returncode: int, claimed: Claim | None = None) -> None:
    """The command's exit status, into the claim (atomically: a reader sees the claim or the claim and the status)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(
        json.dumps(dataclasses.asdict(dataclasses.replace(claimed or Claim(None, None), returncode=returncode)))
    )
    os.replace(tmp, path)


def read_exit_file(path: Path) -> int | None:
    found = read_claim(path)
    return found.returncode if found is not None else None


def _create(path: Path, record: Claim) -> bool:
    """Make `path` holding `record` unless it exists (False): written aside, then linked into place, so the file is
    never seen half-written and of two processes making it only one succeeds."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(record)))
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True


@functools.cache
def _start_time() -> float:
    import psutil  # only here: the launcher's own start, as the bot reads it for a pid (runner/backends/local.py)

    return float(psutil.Process().create_time())


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[:2] == ["--warm", "--"]:
        return warm(argv[2:])
    if len(argv) < 4 or argv[0] != "--exit-file" or argv[2] != "--":
        print(
            "usage: python -m runner.launcher --exit-file FILE -- COMMAND...\n"
            "       python -m runner.launcher --warm -- COMMAND...",
            file=sys.stderr,
        )
        return 2
    exit_file, command = Path(argv[1]), argv[3:]
    _ignore_stops()
    if (mine := claim(exit_file)) is None:
        print(GIVEN_UP, file=sys.stderr, flush=True)
        return 0
    try:
        child = _start(command)
    except OSError as exc:
        print(f"trainbot: cannot start {command[0]}: {exc}", file=sys.stderr, flush=True)
        write_exit_file(exit_file, 127, mine)
        return 127
    write_exit_file(exit_file, child.wait(), mine)
    return 0


def warm(command: list[str]) -> int:
    _ignore_stops()
    _start_time()  # now, not once the job is here: it goes to its warm process at once
    try:
        child = _start(command, stdin=subprocess.PIPE)
    except OSError:
        child = None  # a job that comes is started afresh
    line = sys.stdin.readline()
    if not line:  # closed by the bot: no job for this process
        if child is not None and child.stdin is not None:
            child.stdin.close()
            child.wait()
        return 0
    order = json.loads(line)
    exit_file, job = Path(order["exit_file"]), order["job"]
    if (mine := claim(exit_file)) is None:  # the job is not ours any more: the warm process leaves without it
        _say(job, GIVEN_UP)
        if child is not None and child.stdin is not None:
            child.stdin.close()
            child.wait()
        return 0
    try:
        if child is None or child.stdin is None or child.poll() is not None:
            raise BrokenPipeError
        child.stdin.write(json.dumps(job).encode() + b"\n")
        child.stdin.close()
    except BrokenPipeError:  # the warm process is gone (killed?): the job starts afresh
        returncode = _afresh(job, "the process kept warm for this job had ended")
    else:
        returncode = child.wait()
        if not _taken(job) and returncode not in STOPPED:  # it died before it took the job (a crash while importing)
            _keep_preamble(job)
            returncode = _afresh(job, f"the process kept warm ended (exit status {returncode}) before it took the job")
    _keep_preamble(job)
    write_exit_file(exit_file, returncode, mine)
    return 0


def _say(job: dict[str, Any], line: str) -> None:
    try:
        with open(job["log"], "a") as log:
            log.write(line + "\n")
    except (OSError, KeyError, TypeError):
        pass


STOPPED = (-signal.SIGINT, -signal.SIGTERM)  # a stop reached the warm process: the job ends there


def _taken(job: dict[str, Any]) -> bool:
    """Whether the warm process took its job: it removes the preamble once it has copied it into the job's log."""
    return not job.get("preamble") or not os.path.exists(job["preamble"])


def _afresh(job: dict[str, Any], why: str) -> int:
    """Start the job's command afresh, its output to its log, and wait for it (127: it could not start). The line
    is runner/swift_levers.py's `not_applied_line` (this script imports only the standard library)."""
    with open(job["log"], "ab") as log:
        log.write(f"[trainbot] warm start not applied (warm_start): {why}; starting swift afresh\n".encode())
        log.flush()
        try:
            child = _start(job["argv"], env=job["env"], stdout=log, stderr=subprocess.STDOUT)
        except OSError as exc:
            log.write(f"trainbot: cannot start {job['argv'][0]}: {exc}\n".encode())
            return 127
    return child.wait()


def _keep_preamble(job: dict[str, Any]) -> None:
    """What the warm process printed, if it ended before taking the job's log (a stop at once): into that log."""
    try:
        with open(job["preamble"], "rb") as earlier, open(job["log"], "ab") as log:
            log.write(earlier.read())
        os.unlink(job["preamble"])
    except (OSError, KeyError, TypeError):
        pass


def _ignore_stops() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _start(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """The child gets default signal handling back, so a stop reaches swift as usual; its environment is the
    launcher's own (or the job's, given), which the backend built with runner/child_env.py (no bot secrets)."""
    return subprocess.Popen(
        command,
        restore_signals=True,
        preexec_fn=lambda: (
            signal.signal(signal.SIGINT, signal.SIG_DFL),
            signal.signal(signal.SIGTERM, signal.SIG_DFL),
            None,
        )[-1],
        **kwargs,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
