"""The process that stands between the bot and `swift`: it records swift's exit status in a file.

The bot may die (even by SIGKILL) while training goes on; a restarted bot is no longer the parent and cannot
read the exit status. This small launcher leads the job's process group, ignores the group-wide SIGINT/SIGTERM
of a stop (so it outlives swift and can write down how swift ended), and writes `{"returncode": N}` atomically.

    python -m runner.launcher --exit-file F -- swift sft ...
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path


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
    if len(argv) < 4 or argv[0] != "--exit-file" or argv[2] != "--":
        print("usage: python -m runner.launcher --exit-file FILE -- COMMAND...", file=sys.stderr)
        return 2
    exit_file, command = Path(argv[1]), argv[3:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        # the child gets default signal handling back, so a stop reaches swift as usual; its environment is
        # the launcher's own, which the backend built with runner/child_env.py (no bot secrets)
        child = subprocess.Popen(command, restore_signals=True,
                                 preexec_fn=lambda: (signal.signal(signal.SIGINT, signal.SIG_DFL),
                                                     signal.signal(signal.SIGTERM, signal.SIG_DFL), None)[-1])
    except OSError as exc:
        print(f"trainbot: cannot start {command[0]}: {exc}", file=sys.stderr, flush=True)
        write_exit_file(exit_file, 127)
        return 127
    returncode = child.wait()
    write_exit_file(exit_file, returncode)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
