"""Where a user's `model=` and `dataset=` may point: a hub id, or a path inside the folders the config allows.

Unlike the rest of the grammar this reads the disk: a path is judged by where it really leads (symlinks and `..`
resolved), and a hub-id-shaped value that names an existing local path is a path (swift would read it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_HUB_MODEL = re.compile(f"{_PART}/{_PART}")
_HUB_DATASET = re.compile(f"{_PART}/{_PART}(:{_PART})?")
_SAMPLES = re.compile(r"#[0-9]{1,9}$")
HUB_EXAMPLES = {"model": "Qwen/Qwen2.5-VL-7B-Instruct", "dataset": "AI-ModelScope/LaTeX_OCR#500"}


@dataclass(frozen=True)
class Refused:
    """Why a value may not be used, in words for the grammar's rejection."""

    why: str


def check_source(key: str, value: str, *, roots: Sequence[Path], base_dir: Path) -> str | Refused:
    """The value to hand to swift (a hub id as given, a path made absolute and real), or why not.
    `key` is "model" or "dataset"; a dataset may end in `#N` (use N samples)."""
    samples = _SAMPLES.search(value) if key == "dataset" else None
    name = value[: samples.start()] if samples else value
    suffix = samples.group() if samples else ""
    hub = _HUB_DATASET if key == "dataset" else _HUB_MODEL
    try:
        local = os.path.realpath(base_dir / os.path.expanduser(name))
        if hub.fullmatch(name) and ".." not in name.split("/") and not os.path.lexists(base_dir / name):
            return value
    except ValueError:  # a lone surrogate, which no file name can hold
        return Refused(f"is not a hub id like `{HUB_EXAMPLES[key]}` nor a path: it holds a broken character")
    if any(Path(local).is_relative_to(root) for root in roots):
        return local + suffix
    config_key = f"[paths] {'model' if key == 'model' else 'data'}_roots"
    allowed = (f"`{config_key}` allows only " + ", ".join(f"`{root}`" for root in roots) if roots
               else f"no local {key} folder is allowed (`{config_key}` is empty)")
    leads = "" if local == os.path.normpath(base_dir / name) else f", which leads to `{local}`"
    return Refused(f"is not a hub id like `{HUB_EXAMPLES[key]}`, and as a local path{leads} it lies outside "
                   f"the allowed folders: {allowed}")
