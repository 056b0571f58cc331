"""Where a swift run writes, found on disk: its run folder (`<output_dir>/vN-YYYYMMDD-HHMMSS/`), its
checkpoint-N folders, and the lines appended to a file since it was last read (stat first, read only what is new).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

LOGGING_FILE = "logging.jsonl"

_VERSION_DIR = re.compile(r"^v(\d+)-(\d{8})-(\d{6})$")
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


def find_run_dir(output_dir: Path, started_after: float | None = None) -> Path | None:
    """The newest `<output_dir>/vN-YYYYMMDD-HHMMSS/` (highest N); with `started_after` (epoch seconds, the
    job's start) only one made after it. A run with `--add_version false` writes into `output_dir` itself."""
    try:
        entries = list(os.scandir(output_dir))
    except OSError:
        return None
    found = [
        (int(m[1]), e.name)
        for e in entries
        if (m := _VERSION_DIR.match(e.name))
        and e.is_dir()
        and (started_after is None or _made_after(e.path, m, started_after))
    ]
    if found:
        return Path(output_dir, max(found)[1])
    files = [Path(output_dir, name) for name in (LOGGING_FILE, "args.json")]
    return Path(output_dir) if any(_modified_after(f, started_after) for f in files) else None


def run_dirs(output_dir: Path, made_from: float, made_until: float | None = None) -> list[Path]:
    """Every `<output_dir>/vN-YYYYMMDD-HHMMSS/` named (swift's local time, to the second) between `made_from` and
    `made_until` (epoch seconds; None: now), oldest version first: the runs of one job, a resumed one's too. A
    folder whose name holds no readable time is judged by its mtime."""
    try:
        entries = list(os.scandir(output_dir))
    except OSError:
        return []
    found = []
    for entry in entries:
        if (m := _VERSION_DIR.match(entry.name)) is None or not entry.is_dir():
            continue
        named = _named_time(m)
        if named is None:
            named = _mtime(Path(entry.path))
        if named is not None and made_from - 1 <= named and (made_until is None or named <= made_until + 1):
            found.append((int(m[1]), entry.name))
    return [Path(output_dir, name) for _, name in sorted(found)]


def _named_time(match: re.Match[str]) -> float | None:
    try:
        return time.mktime(time.strptime(match[2] + match[3], "%Y%m%d%H%M%S"))
    except (ValueError, OverflowError):
        return None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _made_after(path: str, match: re.Match[str], started_after: float) -> bool:
    # The name holds swift's local creation time (to the second); the mtime guards against a TZ mismatch.
    named = _named_time(match)
    return (named is not None and named >= started_after - 1) or _modified_after(Path(path), started_after)


def _modified_after(path: Path, at_least: float | None) -> bool:
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return False
    return at_least is None or mtime >= at_least


def checkpoint_numbers(run_dir: Path, above: int) -> list[int]:
    try:
        with os.scandir(run_dir) as entries:
            numbers = [int(m[1]) for e in entries if (m := _CHECKPOINT_DIR.match(e.name)) and e.is_dir()]
    except OSError:
        return []
    return sorted(n for n in numbers if n > above)


def checkpoint_number(path: str | None) -> int | None:
    """N of a `.../checkpoint-N` path."""
    match = _CHECKPOINT_DIR.match(Path(path).name) if path else None
    return int(match[1]) if match else None


class LineCursor:
    """The complete lines appended to a file since the last read: stat first, read only what is new."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path, self.offset = path, offset
        self._sig: tuple[int, int, int] | None = None

    def read_lines(self, final: bool = False) -> list[bytes] | None:
        """None: no such file; []: nothing new. With `final` a trailing partial line counts too."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        if sig == self._sig and not final:
            return []
        if st.st_size < self.offset or (self._sig is not None and st.st_ino != self._sig[0]):
            self.offset = 0  # truncated or replaced: start over
        self._sig = sig
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = len(data) if final else data.rfind(b"\n") + 1
        self.offset += end
        return data[:end].splitlines()
