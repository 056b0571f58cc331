"""No test leaves a process behind: what it started must be gone when it ends (tests/conftest.py checks each one).

A trainer outlives the bot by design (it leads its own session), so when a test's `trainbot serve` ends, its
trainers are orphans. Linux would hand them to init, out of sight; this process asks to adopt them instead
(PR_SET_CHILD_SUBREAPER), so every process a test started, directly or not, stays below this one while it runs.
What counts as left behind: a new child of this process (whatever it is), and a new job anywhere below it (a
launcher of runner/launcher.py, say under a server that a module's tests share and that may keep its own helpers).
The tree is read from /proc/<pid>/task/*/children (microseconds, no scan of every process).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

PR_SET_CHILD_SUBREAPER = 36
EXIT_GRACE_S = 3.0  # what a process that is already ending (a server told to stop) gets to be gone

Key = tuple[int, float]  # pid and start time: a reused pid is another process


def adopt_orphans() -> None:
    """Orphaned descendants of this process become its children rather than init's (Linux; elsewhere nothing)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _child_pids(pid: int) -> set[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        with contextlib.suppress(psutil.Error):
            return {p.pid for p in psutil.Process(pid).children()}
        return set()
    pids: set[int] = set()
    for tid in tasks:
        with contextlib.suppress(OSError):
            pids.update(int(child) for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
    return pids


def _tree() -> tuple[set[int], set[int]]:
    """This process's children, and everything below them."""
    direct = _child_pids(os.getpid())
    below: set[int] = set()
    todo = list(direct)
    while todo:
        found = _child_pids(todo.pop()) - below
        below |= found
        todo += found
    return direct, below - direct


def _running(pids: Iterable[int]) -> dict[Key, psutil.Process]:
    """The processes among `pids` that still run (zombies of ours are reaped here: they ran, they are over)."""
    found: dict[Key, psutil.Process] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                _reap(pid)
            else:
                found[(pid, proc.create_time())] = proc
        except psutil.Error:
            continue
    return found


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _is_job(proc: psutil.Process) -> bool:
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return False
    return any(arg.endswith("launcher.py") for arg in cmdline[:3]) and "--exit-file" in cmdline


def children() -> set[Key]:
    """Every process below this one that runs now."""
    direct, below = _tree()
    return set(_running(direct | below))


def _new(before: set[Key]) -> dict[Key, psutil.Process]:
    direct, below = _tree()
    new = {key: proc for key, proc in _running(direct).items() if key not in before}
    new.update((key, proc) for key, proc in _running(below).items() if key not in before and _is_job(proc))
    return new


def leftovers(before: set[Key]) -> list[str]:
    """What the test left running (see the module's docstring), after a short grace: each is killed with
    everything under it, and described (pid and command line) for the failure message."""
    deadline = time.monotonic() + EXIT_GRACE_S
    while (new := _new(before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    described: list[str] = []
    doomed: list[psutil.Process] = []
    for proc in new.values():
        with contextlib.suppress(psutil.Error):
            described.append(f"{proc.pid}: {' '.join(proc.cmdline())[:300]}")
            doomed += [proc, *proc.children(recursive=True)]
    for proc in doomed:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + EXIT_GRACE_S
    while doomed and time.monotonic() < deadline:  # the killed are re-parented here one by one: reap them
        doomed = [proc for proc in doomed if _still_there(proc)]
        time.sleep(0.02)
    return described


def _still_there(proc: psutil.Process) -> bool:
    _reap(proc.pid)
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
