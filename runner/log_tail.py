"""A log's tail as people read it: the last bytes of the file, and its lines as a terminal shows them."""

from __future__ import annotations

import re
from pathlib import Path

TAIL_BYTES = 64 * 1024
_MAX_LINE = 300

# tqdm: "Train:  14%|█▍   | 5/36 [00:00<00:05, 5.39it/s]", "Map: 400 examples [00:00, 1406.12 examples/s]"
_TQDM = re.compile(r"\d+%\|[^|\r\n]*\|[^\]\r\n]*\]|\d+ \w+ \[\d+:\d\d(?::\d\d)?,[^\]\r\n]*\]")
_RANK_PREFIX = re.compile(r"^\[(?:default)?rank\d+\]:\s?")
_CARETS = re.compile(r"^\s*[\^~]+\s*$")


def read_log_tail(path: Path, max_bytes: int = TAIL_BYTES) -> str:
    """The last `max_bytes` of the log (from a line start), decoded leniently; "" if it cannot be read."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    if size > max_bytes:
        data = data[data.find(b"\n") + 1 :]
    return data.decode("utf-8", "replace")


def clean_lines(text: str) -> list[str]:
    """Lines as a terminal shows them: tqdm bars and `\\r` redraws collapsed, DDP rank prefixes and Python
    3.11's ^^^ markers dropped, blank lines skipped, long lines cut."""
    out: list[str] = []
    for raw in text.split("\n"):
        segments = [_after_bars(seg) for seg in raw.split("\r")]
        line = _RANK_PREFIX.sub("", next((s for s in reversed(segments) if s), "")).rstrip()
        if line and not _CARETS.match(line):
            out.append(line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 1] + "…")
    return out


def _after_bars(segment: str) -> str:
    """What a segment shows after its last progress bar (the bar's label and the bar itself are noise)."""
    bars = list(_TQDM.finditer(segment))
    return segment[bars[-1].end() if bars else 0 :].strip()
