"""A copy of the SQLite file taken while the bot runs, through SQLite's online backup API.

The copy is one consistent snapshot (WAL: the bot's writes go on meanwhile; they land in a later backup). It is
written beside the target under a temporary name and only then moved into place, so a crash, a full disk or a
failed check never leaves a half-written file under the target's name. The live file is opened read-only.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from storage.db import BUSY_TIMEOUT_MS


class BackupError(Exception):
    """A backup that was not made; nothing was written under the target's name."""


class NoDatabase(BackupError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"no database at {path}")
        self.path = path


class TargetExists(BackupError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} exists")
        self.path = path


class CopyFailed(BackupError):
    """The copy could not be made (`reason`: SQLite's or the system's own words), or was made but failed SQLite's
    quick_check (`quick_check`; `reason`: what the check found)."""

    def __init__(self, target: Path, reason: str, *, quick_check: bool = False) -> None:
        super().__init__(f"cannot back up to {target}: {'quick_check: ' if quick_check else ''}{reason}")
        self.target, self.reason, self.quick_check = target, reason, quick_check


@dataclass(frozen=True)
class BackupDone:
    target: Path
    jobs: int  # how many jobs the copy holds
    schema_version: int
    size_bytes: int


def backup(source: Path, target: Path, *, replace: bool = False) -> BackupDone:
    """Copy the database at `source` to `target` (refused if it exists, unless `replace`) and check the copy."""
    if not source.is_file():
        raise NoDatabase(source)
    if target.exists() and not replace:
        raise TargetExists(target)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as exc:
        raise CopyFailed(target, exc.strerror or str(exc)) from exc
    os.close(fd)
    partial = Path(name)
    try:
        done = _copy(source, partial, target)
        _publish(partial, target, replace=replace)
        return done
    finally:
        partial.unlink(missing_ok=True)


def _copy(source: Path, partial: Path, target: Path) -> BackupDone:
    live = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        copy = sqlite3.connect(partial)
        try:
            live.backup(copy)  # all pages in one step: one read transaction, one snapshot
            copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
            check = copy.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise CopyFailed(target, str(check), quick_check=True)
            jobs = int(copy.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
            schema = int(copy.execute("PRAGMA user_version").fetchone()[0])
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise CopyFailed(target, str(exc)) from exc
    finally:
        live.close()
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    return BackupDone(target, jobs, schema, partial.stat().st_size)


def _publish(partial: Path, target: Path, *, replace: bool) -> None:
    """Move the finished copy to its name: os.replace, or, not replacing, a hard link that fails if the name
    was taken meanwhile (no check-then-write race)."""
    try:
        if replace:
            os.replace(partial, target)
        else:
            os.link(partial, target)
    except FileExistsError as exc:
        raise TargetExists(target) from exc
    except OSError as exc:
        raise CopyFailed(target, exc.strerror or str(exc)) from exc
    with contextlib.suppress(OSError):  # the rename itself survives a power cut once its folder is synced
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
