"""A try session's process (runner/try_entry.py) as the runner sees it: started afresh or handed to the one kept
warm, spoken to in JSON lines (requests on its stdin, tokens on its stdout), ended by closing its stdin.

It leads its own process group (so it can be found and ended whole by pid after a bot restart), runs with
runner/child_env.py's environment (no bot secrets), and writes what swift prints to the session's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from runner import try_entry
from runner.try_errors import TryFailed

LINE_LIMIT = 1 << 22  # one JSON line of the protocol (a token is a few bytes; an error's text a few KB)
CLOSE_GRACE_S = 5.0  # after stdin closes, the process leaves by itself; then SIGTERM, then SIGKILL
PREAMBLES = "warm-try-*.log"


ProcessTrouble = Literal["child_error", "ended", "line_too_long", "not_json", "warm_ended"]


class TryProcessError(RuntimeError):
    """The process failed or ended: `cause` says how, `detail` its own last words (`child_error`), the line it
    wrote (`not_json`) or the reader's complaint (`line_too_long`); `returncode` its exit status (`ended`). A Slurm
    batch job's (runner/try_slurm.py): `slurm_state` how Slurm ended it, `tail` its log's last lines."""

    def __init__(
        self,
        cause: ProcessTrouble,
        detail: str = "",
        returncode: int | None = None,
        *,
        slurm_state: str | None = None,
        tail: str = "",
    ) -> None:
        super().__init__(f"try process: {cause} {detail} {returncode if returncode is not None else ''}".strip())
        self.cause, self.detail, self.returncode = cause, detail, returncode
        self.slurm_state, self.tail = slurm_state, tail

    def failed(self, job_id: str, log_path: Path) -> TryFailed:
        """The try's typed error for this."""
        return TryFailed(
            job_id,
            self.cause,
            str(log_path),
            detail=self.detail,
            returncode=self.returncode,
            slurm_state=self.slurm_state,
            tail=self.tail,
        )


@dataclass(frozen=True)
class Loaded:
    load_s: float
    warm: bool


class TryProcess:
    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc, self.log = proc, log
        self.started = psutil.Process(proc.pid).create_time() if _exists(proc.pid) else time.time()
        self._seq = 0
        self._unfinished: str | None = None  # a request whose answer was not read to its end (its asker left)

    @classmethod
    async def start(cls, argv: Sequence[str], env: Mapping[str, str], log: Path) -> TryProcess:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            out.write(f"[trainbot] {time.strftime('%Y-%m-%d %H:%M:%S')} try: {' '.join(argv)}\n".encode())
            out.flush()
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=out,
                start_new_session=True,
                env=dict(env),
                limit=LINE_LIMIT,
            )
        return cls(proc, log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def loaded(self) -> Loaded:
        """Wait for the model to be loaded (TryProcessError: it failed, with its last words)."""
        message = await self._read()
        if "loaded" in message:
            return Loaded(float(message["loaded"].get("load_s") or 0.0), bool(message["loaded"].get("warm")))
        raise TryProcessError("child_error", str(message.get("failed") or message))

    async def ask(self, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Send one request; yield its `delta` and, last, its `done` message (TryProcessError: its `error`, or the
        process ended). One request at a time: the caller holds the session's lock."""
        if self._unfinished is not None:
            await self._drain(self._unfinished)
        self._seq += 1
        rid = f"r{self._seq}"
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({**request, "id": rid}, ensure_ascii=False).encode() + b"\n")
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise TryProcessError("ended") from exc
        self._unfinished = rid
        while True:
            message = await self._read()
            if message.get("id") != rid:
                continue
            if "error" in message:
                self._unfinished = None
                raise TryProcessError("child_error", str(message["error"]))
            if "done" in message:
                self._unfinished = None
            yield message
            if "done" in message:
                return

    async def _drain(self, rid: str) -> None:
        while True:
            message = await self._read()
            if message.get("id") == rid and ("done" in message or "error" in message):
                self._unfinished = None
                return

    async def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            line = await self.proc.stdout.readline()
        except ValueError as exc:  # a line over LINE_LIMIT
            raise TryProcessError("line_too_long", str(exc)) from exc
        if not line:
            await self.proc.wait()
            raise TryProcessError("ended", returncode=self.proc.returncode)
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise TryProcessError("not_json", repr(line[:200])) from exc
        return message if isinstance(message, dict) else {"failed": repr(message)}

    async def close(self) -> None:
        """Stdin closed: it leaves by itself once its answer is done; else SIGTERM, then SIGKILL, to its group."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), CLOSE_GRACE_S)
                break
        else:
            await self.proc.wait()


def end_group(pid: int, started: float | None) -> bool:
    """A session's process left by an earlier bot: SIGKILL to its group if it is still that process (same start
    time). True if one was there."""
    try:
        proc = psutil.Process(pid)
        if started is not None and abs(proc.create_time() - started) > 1.0:
            return False
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.Error:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return True


class WarmTry:
    """A runner/try_entry.py --warm process: swift's inference imported, waiting for a session."""

    def __init__(self, proc: asyncio.subprocess.Process, preamble: Path) -> None:
        self.proc, self.preamble = proc, preamble
        self._ready: asyncio.Task[bool] = asyncio.create_task(self._read_ready())

    @classmethod
    async def start(cls, python: Sequence[str], env: Mapping[str, str], folder: Path) -> WarmTry:
        folder.mkdir(parents=True, exist_ok=True)
        preamble = folder / PREAMBLES.replace("*", uuid.uuid4().hex[:12])
        with preamble.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *python,
                try_entry.__file__,
                try_entry.WARM,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=out,
                start_new_session=True,
                env=dict(env),
                limit=LINE_LIMIT,
            )
        return cls(proc, preamble)

    async def _read_ready(self) -> bool:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        try:
            return "ready" in json.loads(line)
        except ValueError:
            return False

    async def ready(self) -> bool:
        """Wait for swift to be imported; False: the process failed or ended."""
        return await asyncio.shield(self._ready)

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def take(self, args: Sequence[str], argv: Sequence[str], env: Mapping[str, str], log: Path) -> TryProcess:
        """Hand the session to this process (it becomes the session's). TryProcessError: it was gone."""
        if not await self.ready() or not self.alive():
            raise TryProcessError("warm_ended")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            out.write(f"[trainbot] {time.strftime('%Y-%m-%d %H:%M:%S')} try (warm): {' '.join(argv)}\n".encode())
        job = {
            "args": list(args),
            "argv": list(argv),
            "env": dict(env),
            "log": str(log),
            "preamble": str(self.preamble),
        }
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(job).encode() + b"\n")
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise TryProcessError("warm_ended") from exc
        return TryProcess(self.proc, log)

    async def close(self) -> None:
        """Not taken: it goes (it holds nothing)."""
        self._ready.cancel()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        self.preamble.unlink(missing_ok=True)


def remove_preambles(folder: Path) -> None:
    """An earlier bot's warm try processes' preambles (they left when its pipes closed)."""
    for stale in folder.glob(PREAMBLES):
        with contextlib.suppress(OSError):
            stale.unlink()


def _exists(pid: int) -> bool:
    try:
        psutil.Process(pid)
    except psutil.Error:
        return False
    return True
