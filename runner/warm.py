"""A process kept ready for the next job: swift imported before the job comes (`[runner] warm_start`).

Importing swift (torch, transformers, peft, datasets) was 14.6 of the 21.7 s from launch to the first step of the
fixed job on the H200 (docs/gpu.md). The local backend keeps one `runner/launcher.py --warm` with its
`runner/swift_entry.py --warm` child: the child imports swift and waits; a job started through the same entry
(`sft` or `export`, one process) is handed to it as a JSON line instead of starting a new python. The child
decides whether the job may run in it (`swift_entry.cold_reason`: nothing read at import may differ, no imported
file may have changed on disk since) and otherwise
becomes a fresh start of the job; either way the job is the launcher's, as any other (the launch claimed in its exit
file before the job goes to the child, process group, stops). Once a slot is taken, the next one is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from runner import launcher, swift_entry

RANK_LAUNCHER = "torch.distributed.run"  # a job on several GPUs: one process a GPU, each started afresh


@dataclass
class WarmSlot:
    """One launcher with its warm child, not yet given a job."""

    entry: tuple[str, ...]  # the command prefix it stands for: swift's python and runner/swift_entry.py
    proc: asyncio.subprocess.Process  # the launcher (leader of its own process group)
    preamble: Path  # what the child prints before its job (swift's import messages), copied into the job's log

    @classmethod
    async def start(cls, entry: Sequence[str], env: Mapping[str, str], folder: Path) -> WarmSlot:
        folder.mkdir(parents=True, exist_ok=True)
        preamble = folder / PREAMBLES.replace("*", uuid.uuid4().hex[:12])
        with preamble.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                launcher.__file__,
                "--warm",
                "--",
                *entry,
                swift_entry.WARM,
                stdin=asyncio.subprocess.PIPE,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                env=dict(env),
            )
        return cls(tuple(entry), proc, preamble)

    def stands_for(self, argv: Sequence[str]) -> bool:
        """Whether a job's command starts with this slot's entry (one process, `sft` or `export`)."""
        n = len(self.entry)
        return tuple(argv[:n]) == self.entry and len(argv) > n and argv[n] in swift_entry.SCRIPTS

    def serves(self, argv: Sequence[str]) -> bool:
        """Whether the slot may take the job: it stands for its command, lives and could import swift (one that
        could not is passed over: the job starts afresh)."""
        return self.stands_for(argv) and self.alive() and self.failure() is None

    def ready(self) -> bool:
        """The child has imported swift (a job handed before then waits for the imports to end)."""
        try:
            return swift_entry.READY.encode() in self.preamble.read_bytes()
        except OSError:
            return False

    def failure(self) -> str | None:
        """Why the child could not import swift (it says so instead of being ready); None: it could, or still may."""
        try:
            text = self.preamble.read_bytes().decode("utf-8", "replace")
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(swift_entry.IMPORT_FAILED):
                return line[len(swift_entry.IMPORT_FAILED) :].strip(" (").partition("); ")[0]
        return None

    def alive(self) -> bool:
        """The launcher still runs (a killed one stays a zombie until the event loop reaps it)."""
        try:
            return self.proc.returncode is None and psutil.Process(self.proc.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    async def hand(self, argv: Sequence[str], env: Mapping[str, str], *, log: Path, exit_file: Path) -> bool:
        """Give the job to the slot: from now on its launcher is the job's. False: the launcher was gone."""
        job = {
            "args": list(argv[len(self.entry) :]),
            "argv": list(argv),
            "env": dict(env),
            "log": str(log),
            "preamble": str(self.preamble),
        }
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"exit_file": str(exit_file), "job": job}).encode() + b"\n")
            await self.proc.stdin.drain()
            self.proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    async def close(self) -> None:
        """No job for it: the launcher and its child are killed (they hold nothing; a bot that dies instead
        closes their stdin, and they leave by themselves)."""
        if self.proc.returncode is None:  # not reaped yet, so its pid (= its group) is still its own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        self.preamble.unlink(missing_ok=True)


PREAMBLES = "warm-*.log"  # in the exits folder: what each warm process printed before its job came


def remove_preambles(folder: Path) -> None:
    """An earlier bot's warm processes' preambles: a killed bot cannot remove them, and its warm processes left when
    their stdin closed. Called before this bot starts its first."""
    for stale in folder.glob(PREAMBLES):
        with contextlib.suppress(OSError):  # a file it cannot remove must not keep the next warm process away
            stale.unlink()


def warm_entry(argv: Sequence[str]) -> tuple[str, ...] | None:
    """The prefix of a one-process command through runner/swift_entry.py (swift's python and the entry), which a
    warm process can stand for; None for `swift` itself, or ranks under torch.distributed.run."""
    for i, arg in enumerate(argv):
        if arg.endswith(swift_entry.ENTRY_MARK):
            return tuple(argv[: i + 1]) if RANK_LAUNCHER not in argv[:i] else None
    return None
