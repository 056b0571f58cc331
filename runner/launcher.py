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
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any


def write_exit_file(path: Path, returncode: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"returncode": returncode}))
    os.replace(tmp, path)


def read_exit_file(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["returncode"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[:2] == ["--warm", "--"]:
        return warm(argv[2:])
    if len(argv) < 4 or argv[0] != "--exit-file" or argv[2] != "--":
        print("usage: python -m runner.launcher --exit-file FILE -- COMMAND...\n"
              "       python -m runner.launcher --warm -- COMMAND...", file=sys.stderr)
        return 2
    exit_file, command = Path(argv[1]), argv[3:]
    _ignore_stops()
    try:
        child = _start(command)
    except OSError as exc:
        print(f"trainbot: cannot start {command[0]}: {exc}", file=sys.stderr, flush=True)
        write_exit_file(exit_file, 127)
        return 127
    write_exit_file(exit_file, child.wait())
    return 0


def warm(command: list[str]) -> int:
    _ignore_stops()
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
    write_exit_file(exit_file, returncode)
    return 0


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
    return subprocess.Popen(command, restore_signals=True,
                            preexec_fn=lambda: (signal.signal(signal.SIGINT, signal.SIG_DFL),
                                                signal.signal(signal.SIGTERM, signal.SIG_DFL), None)[-1],
                            **kwargs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
