"""Which ms-swift will run: found from the `swift` executable's own environment, without importing torch here.

The swift CLI may live in another virtualenv than the bot, so `importlib.metadata` in our process would answer
for the wrong one. We look for the `ms_swift-*.dist-info` beside the executable first (no subprocess), then ask
the interpreter of its shebang (importlib.metadata only: milliseconds, no torch import).
"""

from __future__ import annotations

import functools
import glob
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runner.child_env import child_env

# Flags ms-swift renamed, by the major version that renamed them; recipes use the seed's (3.x) names.
RENAMED: dict[int, dict[str, str]] = {4: {"train_type": "tuner_type"}}


class SwiftNotFound(RuntimeError):
    """The swift CLI `swift` is not on this machine, or (`version_unknown`) its ms-swift version cannot be told
    (the config's `[swift] version` then says it)."""

    def __init__(self, swift: str, *, version_unknown: bool = False) -> None:
        super().__init__(f"{swift}: {'ms-swift version unknown' if version_unknown else 'not found'}")
        self.swift, self.version_unknown = swift, version_unknown


@dataclass(frozen=True, order=True)
class SwiftVersion:
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> SwiftVersion:
        m = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", text)
        if not m:
            raise ValueError(f"not an ms-swift version: {text!r}")
        return cls(int(m[1]), int(m[2]), int(m[3] or 0))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def resolve_swift(bin_: str) -> Path:
    """The absolute path of the swift executable named in the config (a path or a name on PATH)."""
    found = shutil.which(bin_)
    if found is None:
        raise SwiftNotFound(bin_)
    return Path(found).absolute()


def detect_version(bin_: str) -> SwiftVersion:
    path = resolve_swift(bin_)
    return _detect_cached(str(path), path.stat().st_mtime)


@functools.lru_cache(maxsize=8)
def _detect_cached(path: str, _mtime: float) -> SwiftVersion:
    found = _from_dist_info(Path(path)) or _from_interpreter(Path(path))
    if found is None:
        raise SwiftNotFound(path, version_unknown=True)
    return SwiftVersion.parse(found)


def _from_dist_info(path: Path) -> str | None:
    prefix = path.parent.parent  # <venv>/bin/swift -> <venv>
    pattern = str(prefix / "lib" / "python*" / "site-packages" / "ms_swift-*.dist-info")
    for dist in sorted(glob.glob(pattern)):
        m = re.search(r"ms_swift-([0-9][^-]*)\.dist-info$", dist)
        if m:
            return m[1]
    return None


def interpreter_of(path: Path) -> list[str] | None:
    """The interpreter in a console script's shebang (`#!/venv/bin/python3`), i.e. the python swift runs on."""
    try:
        first = path.read_bytes()[:256].split(b"\n", 1)[0].decode()
    except (OSError, UnicodeDecodeError):
        return None
    if not first.startswith("#!"):
        return None
    return first[2:].strip().split() or None


def _from_interpreter(path: Path) -> str | None:
    interpreter = interpreter_of(path)
    if interpreter is None:
        return None
    code = "import importlib.metadata as m; print(m.version('ms-swift'))"
    try:
        out = subprocess.run(
            [*interpreter, "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            env=child_env(None, {"PYTHONNOUSERSITE": "1"}),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
