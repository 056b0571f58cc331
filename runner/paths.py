"""Where a path a user gave really leads, judged on disk: every user-given path goes through `confine`.

A check on the text alone lets a symlink inside a root lead anywhere (`output/link -> /elsewhere`), so the path is
resolved with the symlinks of the parts that exist followed, and must still lie inside one of its roots. The check
runs when a job is created and again right before its process starts (a link may appear in between).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from storage.errors import JobError


class OutsideRoot(JobError):
    """`field`'s `path` leads to `resolved`, which lies in none of `roots` (the config key `root_key` sets them)."""

    def __init__(self, field: str, path: Path, resolved: Path, roots: tuple[Path, ...], root_key: str) -> None:
        super().__init__(f"{field} {path} leads to {resolved}, outside {', '.join(map(str, roots)) or 'any root'}")
        self.field, self.path, self.resolved, self.roots, self.root_key = field, path, resolved, roots, root_key


def resolved(path: Path, base_dir: Path) -> Path:
    """`path` made absolute against `base_dir` and resolved on disk: symlinks followed, `..` taken after them."""
    return Path(os.path.realpath(base_dir / os.path.expanduser(path)))


def confine(
    field: str, path: Path, roots: Sequence[Path], base_dir: Path, *, root_key: str, root_itself: bool = False
) -> Path:
    """The real path of `path` when it lies inside one of `roots` (each resolved too), else OutsideRoot.
    A root itself counts only with `root_itself` (a job's output folder must be a folder of its own)."""
    real = resolved(path, base_dir)
    real_roots = tuple(resolved(root, base_dir) for root in roots)
    if not any(real.is_relative_to(root) and (root_itself or real != root) for root in real_roots):
        raise OutsideRoot(field, path, real, tuple(roots), root_key)
    return real
