"""No test leaves a process behind: what it started must be gone when it ends (tests/conftest.py checks each one).

A trainer outlives the bot by design (it leads its own session), so when a test's `trainbot serve` ends, its
trainers are orphans. Linux would hand them to init, out of sight; this process asks to adopt them instead
(PR_SET_CHILD_SUBREAPER), so every process a test started, directly or not, is a child of ours while it runs.
The children are read from /proc/self/task/*/children (microseconds, no scan of every process).
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


def _child_pids() -> set[int]:
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return {p.pid for p in psutil.Process().children()}
    pids: set[int] = set()
    for tid in tasks:
        with contextlib.suppress(OSError):
            pids.update(int(pid) for pid in Path(f"/proc/self/task/{tid}/children").read_text().split())
    return pids


def _running(pids: Iterable[int]) -> dict[Key, psutil.Process]:
    """The processes among `pids` that still run (zombies are reaped here: they ran, they are over)."""
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


def children() -> set[Key]:
    """This process's children that run now."""
    return set(_running(_child_pids()))


def leftovers(before: set[Key]) -> list[str]:
    """The children that were not there `before` and are still running after a short grace: each is killed with
    everything under it, and described (pid and command line) for the failure message."""
    deadline = time.monotonic() + EXIT_GRACE_S
    while True:
        new = {key: proc for key, proc in _running(_child_pids()).items() if key not in before}
        if not new or time.monotonic() > deadline:
            break
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
