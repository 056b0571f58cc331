"""A job's logged metrics as series by step: every number swift writes into its runs' logging.jsonl.

Training records give loss, grad_norm, learning_rate, token_acc, memory (`memory(GiB)`, on a GPU), the seconds a
step takes (`train_speed(s/it)`), the epoch and the time elapsed; evaluation records their `eval_*` numbers (an
evaluation's record also repeats the step's speed and time, which would overwrite the training's: only its
`eval_*` keys count). Any other number a record holds is kept under swift's own key, so a metric a newer swift
logs shows up without a change here. Where swift counts the tokens it has seen (`num_input_tokens_seen`), their
rate per second is derived between logged steps.

A resumed job writes a new run folder whose steps start at its checkpoint: its points replace the earlier run's
from there on, so a series is one curve by step, as the job went.

Reading is cheap on repeat: a file is parsed once and then only from where the last read ended (a stat tells
whether it grew), so a page that shows several jobs' curves costs a few stats once they have been read.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.progress import parse_duration, record_kind
from runner.run_files import LOGGING_FILE, run_dirs
from storage.models import Job

# swift's key -> the series' name (the same where it is a plain name)
RENAMED = {"memory(GiB)": "memory_gib", "train_speed(s/it)": "seconds_per_step", "elapsed_time": "elapsed_s"}
_NOT_SERIES = frozenset({"global_step/max_steps", "global_step", "step", "remaining_time", "total_flos"})
TOKENS_SEEN, TOKENS_PER_S = "num_input_tokens_seen", "tokens_per_s"
CACHED_FILES = 512

Point = tuple[int, float]
_VERSIONS = itertools.count(1)


@dataclass(frozen=True)
class Metrics:
    """A job's series: name -> (step, value) points in step order; `max_steps` as swift last said."""

    series: Mapping[str, Sequence[Point]] = field(default_factory=dict)
    max_steps: int | None = None
    run_dirs: tuple[Path, ...] = ()
    _json: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def points_json(self, name: str) -> str:
        """A series as JSON (`[[step, value], ...]`, values to 7 significant digits: what a chart can show),
        made once: a page that shows it again costs nothing."""
        if name not in self._json:
            points = [(s, float(f"{v:.7g}")) for s, v in self.series.get(name, ())]
            self._json[name] = json.dumps(points, separators=(",", ":"))
        return self._json[name]

    def last(self, name: str) -> float | None:
        points = self.series.get(name)
        return points[-1][1] if points else None

    def lowest(self, name: str) -> float | None:
        points = self.series.get(name)
        return min(v for _, v in points) if points else None


def record_points(rec: Mapping[str, Any]) -> tuple[int, dict[str, float]] | None:
    """One logging.jsonl record's step and numbers by series name; None for a record of no step (the summary,
    the runtime line)."""
    kind = record_kind(rec)
    if kind not in ("train", "eval"):
        return None
    step = _step(rec)
    if step is None:
        return None
    values: dict[str, float] = {}
    for key, raw in rec.items():
        if key in _NOT_SERIES or (kind == "eval" and not key.startswith("eval_")):
            continue
        value = parse_duration(raw) if key == "elapsed_time" else _number(raw)
        if value is not None:
            values[RENAMED.get(key, key)] = value
    return step, values


def _step(rec: Mapping[str, Any]) -> int | None:
    step = str(rec.get("global_step/max_steps", "")).partition("/")[0]
    return int(step) if step.isdigit() else None


def _max_steps(rec: Mapping[str, Any]) -> int | None:
    total = str(rec.get("global_step/max_steps", "")).partition("/")[2]
    return int(total) if total.isdigit() else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") else None  # JSON has no NaN or infinity


class _FileSeries:
    """One logging.jsonl, parsed up to `offset` (always a line start)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.sig: tuple[int, int] | None = None  # (inode, size) when last read to its end
        self.offset = 0
        self.version = next(_VERSIONS)  # a new number whenever what was parsed changes
        self.series: dict[str, dict[int, float]] = {}
        self.max_steps: int | None = None
        self.first_step: int | None = None
        self._tokens: tuple[int, float, float] | None = None  # the last (step, tokens seen, elapsed s)

    def read(self, path: Path) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        if self.sig is not None and (st.st_ino != self.sig[0] or st.st_size < self.offset):
            self._reset()  # replaced or truncated: from the start
        if self.sig == (st.st_ino, st.st_size):
            return
        with open(path, "rb") as f:
            f.seek(self.offset)
            data = f.read(st.st_size - self.offset)
        end = data.rfind(b"\n") + 1  # a partial last line waits for the next read
        self.offset += end
        self.sig = (st.st_ino, st.st_size) if end == len(data) else None
        self.add(data[:end].splitlines())

    def add(self, lines: Iterable[bytes]) -> None:
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict) or (found := record_points(rec)) is None:
                continue
            step, values = found
            self.version = next(_VERSIONS)
            self.max_steps = _max_steps(rec) or self.max_steps
            self.first_step = step if self.first_step is None else min(self.first_step, step)
            self._tokens_rate(step, values)
            for name, value in values.items():
                self.series.setdefault(name, {})[step] = value

    def _tokens_rate(self, step: int, values: dict[str, float]) -> None:
        tokens, elapsed = values.get(TOKENS_SEEN), values.get("elapsed_s")
        if tokens is None or elapsed is None:
            return
        if self._tokens is not None and step > self._tokens[0] and elapsed > self._tokens[2]:
            values[TOKENS_PER_S] = (tokens - self._tokens[1]) / (elapsed - self._tokens[2])
        self._tokens = (step, tokens, elapsed)


class MetricsReader:
    """Reads runs' metrics, keeping what it parsed of each file (the most recently used `CACHED_FILES`)."""

    def __init__(self, cached_files: int = CACHED_FILES) -> None:
        self._files: OrderedDict[Path, _FileSeries] = OrderedDict()
        self._merged: OrderedDict[tuple[Path, ...], tuple[tuple[int, ...], Metrics]] = OrderedDict()
        self._limit = cached_files
        self._lock = threading.Lock()  # pages read in worker threads

    def read(self, dirs: Sequence[Path]) -> Metrics:
        """The series of these run folders, oldest first: a later run's points replace the earlier ones' from
        its first step on (a resume from a checkpoint)."""
        key = tuple(Path(d) for d in dirs)
        with self._lock:
            parsed = [self._parsed(Path(run_dir) / LOGGING_FILE) for run_dir in key]
            versions = tuple(p.version for p in parsed)
            kept = self._merged.pop(key, None)
            metrics = kept[1] if kept is not None and kept[0] == versions else _merge(parsed, key)
            self._merged[key] = (versions, metrics)
            for cache in (self._files, self._merged):
                while len(cache) > self._limit:
                    cache.popitem(last=False)
        return metrics

    def _parsed(self, path: Path) -> _FileSeries:
        parsed = self._files.pop(path, None) or _FileSeries()
        self._files[path] = parsed  # the most recently used last
        parsed.read(path)
        return parsed

    def of_job(self, job: Job) -> Metrics:
        return self.read(job_run_dirs(job))


def _merge(parsed: Sequence[_FileSeries], dirs: tuple[Path, ...]) -> Metrics:
    merged: dict[str, dict[int, float]] = {}
    max_steps = None
    for one in parsed:
        if one.first_step is not None:
            for points in merged.values():
                for step in [s for s in points if s >= one.first_step]:
                    del points[step]
        for name, points in one.series.items():
            merged.setdefault(name, {}).update(points)
        max_steps = one.max_steps or max_steps
    series = {name: tuple(sorted(points.items())) for name, points in merged.items() if points}
    return Metrics(series, max_steps, dirs)


def job_run_dirs(job: Job) -> list[Path]:
    """The run folders of a job, oldest first: those made in its output folder while it was the job there
    (between its creation and its end), and its current one."""
    found = run_dirs(Path(job.output_dir), job.created_at, job.finished_at)
    current = Path(job.run_dir) if job.run_dir else None
    if current is not None and current not in found:
        found.append(current)  # `--add_version false` (the output folder itself), or a clock apart
    return found


READER = MetricsReader()
