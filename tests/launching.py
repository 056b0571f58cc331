"""A launch caught midway, made exact with real parts (tests/test_launch_once*.py): a job's log as a FIFO the bot
waits at, the store's write lock held by the test, and the processes a failed test may leave behind."""

from __future__ import annotations

import contextlib
import os
import select
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import requests

from runner.config import Config


class FifoLog:
    """A job's log as a FIFO: the bot's open() of it waits until `let_on`; what comes through is kept."""

    def __init__(self, path: Path) -> None:
        self.path, self.text = path, b""
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        self._fds: list[int] = []
        self._thread: threading.Thread | None = None

    def let_on(self) -> None:
        read = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._fds = [read, os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)]  # ours: no EOF while the bot comes
        self._thread = threading.Thread(target=self._drain, args=(read,), daemon=True)
        self._thread.start()

    def _drain(self, fd: int) -> None:
        while True:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # closed by close()
                return
            if not data:
                return  # every writer gone: the launcher and what it started too
            self.text += data

    def make_plain(self) -> None:
        """A plain file where the FIFO was, for the next bot; what is still coming through the FIFO is kept here."""
        self.path.unlink()
        self.path.touch()

    def close(self) -> None:
        if self._fds:
            os.close(self._fds.pop())  # our write end: EOF once the launcher's are closed too
        if self._thread is not None:
            self._thread.join(30)
        for fd in self._fds:
            os.close(fd)
        self._fds = []


@contextlib.contextmanager
def write_lock(db: Path) -> Iterator[None]:
    """The store's write lock, held by the test: a bot's next write waits (its busy timeout is 10 s)."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=10)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def row(config: Config, job_id: str) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(config.db_path, timeout=10)) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        assert found is not None, job_id
        return dict(found)


def starts(path: Path, what: str) -> list[str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for line in lines if line.startswith(what + " ")]


def in_thread(call: Callable[[], object]) -> None:
    """A request the bot dies answering."""

    def run() -> None:
        with contextlib.suppress(requests.RequestException):
            call()

    threading.Thread(target=run, daemon=True).start()


def leave_nothing(root: Path) -> None:
    """Launchers and fakes started for `root` that a failed test may have left: killed."""
    mine = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and str(root) in " ".join(proc.info["cmdline"] or ()):
                mine.append(proc)
    for proc in mine:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(mine, timeout=10)
