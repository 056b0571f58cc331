"""The speed levers a job ran without, read from its log: the lines runner/swift_levers.py (and the warm start)
print where what a lever reaches into is not there, as typed facts for the job's thread."""

from __future__ import annotations

import re
from pathlib import Path

from runner.swift_levers import NOT_APPLIED
from storage.notices import NotApplied

# `[trainbot] <what> not applied (<lever>): <why>; <what runs instead>` (swift_levers.not_applied_line), anywhere in
# a line (the ranks of a job on several GPUs may prefix theirs)
_LINE = re.compile(rf"\[trainbot\] [^\n]*? {NOT_APPLIED} \(([a-z_]+)\): ([^\n]*)".encode())
# the line a backend writes into the log before each launch (runner/backends/local.py, slurm.py): a restarted job
# appends its new run to the same log
_LAUNCH = re.compile(rb"^\[trainbot\] \d{4}-\d\d-\d\d \d\d:\d\d:\d\d job \S+ (?:train|export)\b", re.M)


def not_applied(log: Path | None) -> tuple[NotApplied, ...]:
    """What the log's last run says it ran without, each lever once, in order (none where the log cannot be read)."""
    if log is None:
        return ()
    try:
        data = log.read_bytes()
    except OSError:
        return ()
    launches = list(_LAUNCH.finditer(data))
    if launches:
        data = data[launches[-1].start() :]
    found: dict[str, NotApplied] = {}
    for match in _LINE.finditer(data):
        lever = match.group(1).decode()
        why = match.group(2).decode("utf-8", "replace").rstrip("\r").rpartition("; ")[0]
        found.setdefault(lever, NotApplied(lever, why))
    return tuple(found.values())
