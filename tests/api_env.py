"""`trainbot serve` as a real process for the HTTP API tests: its URL from what it prints, its stderr kept."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import VENV_BIN
from tests.waiting import wait_until_sync

URL_LINE = re.compile(r"HTTP API on (http://\S+) ")


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    url: str = ""

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def _drain(served: Served) -> None:
    assert served.proc.stderr is not None
    for raw in served.proc.stderr:
        served.lines.append(raw.decode(errors="replace"))


def start_serve(root: Path, env: dict[str, str] | None = None, *args: str) -> Served:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TRAINBOT_"))}
    proc = subprocess.Popen(
        [str(VENV_BIN / "trainbot"), "--config", str(root / "trainbot.toml"), "serve", "--port", "0", *args],
        cwd=root,
        env=base | (env or {}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    served = Served(proc)
    threading.Thread(target=_drain, args=(served,), daemon=True).start()

    def listening() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"trainbot serve exited with {proc.returncode}: {served.log}")
        found = URL_LINE.search(served.log)
        return found.group(1) if found else None

    served.url = wait_until_sync(listening, 60, "trainbot serve to listen")
    return served


@contextmanager
def serving(root: Path, env: dict[str, str] | None = None, *args: str) -> Iterator[Served]:
    served = start_serve(root, env, *args)
    try:
        yield served
    finally:
        served.stop()
