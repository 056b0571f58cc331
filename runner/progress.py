"""Training progress of a swift run, read incrementally from its logging.jsonl, and the milestones people are told
of (evals, checkpoints).

Cheap by design: a poll is a few `stat` calls; the file is read only when it changed, and only from the byte
offset where the last complete line ended (a partial last line is left for the next poll).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from runner.run_files import LOGGING_FILE, LineCursor, checkpoint_number, checkpoint_numbers
from storage.models import Progress

CHECKPOINT_READY_FILE = "trainer_state.json"  # the HF Trainer writes it after the weights

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_FRESH_NS = 2_000_000_000


class MilestoneKind(StrEnum):
    EVAL = "eval"  # an evaluation ended; data: step, epoch and the eval_* metrics (eval_loss, ...)
    CHECKPOINT = "checkpoint"  # a checkpoint-N folder is complete; data: step, path


@dataclass(frozen=True)
class Milestone:
    kind: MilestoneKind
    step: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


def parse_duration(value: object) -> float | None:
    """swift's "7s", "1m 2s", "1h 3m 4s", "2d 1h 0m 3s" (or a number of seconds) -> seconds."""
    parts = _DURATION_PART.findall(value) if isinstance(value, str) else []
    return sum(float(n) * _UNIT_S[unit] for n, unit in parts) if parts else _float(value)


def _float(value: object) -> float | None:
    try:
        return None if isinstance(value, bool) or not isinstance(value, int | float | str) else float(value)
    except ValueError:
        return None


def _path(value: object) -> str | None:
    return value if isinstance(value, str) and value not in ("", "None") else None


def _steps(rec: Mapping[str, Any]) -> tuple[int | None, int | None]:
    step, _, total = str(rec.get("global_step/max_steps", "")).partition("/")
    if step.isdigit() and total.isdigit():
        return int(step), int(total)
    only = rec.get("global_step")
    return (only if isinstance(only, int) else None), None


def record_kind(rec: Mapping[str, Any]) -> str:
    """ "final" (the summary with checkpoints), "runtime" (train_runtime, train_loss), "eval" or "train"."""
    if "last_model_checkpoint" in rec or "best_model_checkpoint" in rec:
        return "final"
    if "train_runtime" in rec:
        return "runtime"
    return "eval" if any(key.startswith("eval_") for key in rec) else "train"


_FIELDS: tuple[tuple[str, str, Callable[[object], object]], ...] = (  # swift's key, Progress field, parser
    ("loss", "loss", _float),
    ("eval_loss", "eval_loss", _float),
    ("learning_rate", "learning_rate", _float),
    ("epoch", "epoch", _float),
    ("elapsed_time", "elapsed_s", parse_duration),
    ("remaining_time", "remaining_s", parse_duration),
    ("train_speed(s/it)", "speed_s_per_it", _float),
    ("memory(GiB)", "gpu_mem_gib", _float),
    ("train_loss", "train_loss", _float),
    ("last_model_checkpoint", "last_checkpoint", _path),
    ("best_model_checkpoint", "best_checkpoint", _path),
)


def fold(progress: Progress, rec: Mapping[str, Any]) -> Progress:
    """`progress` updated with one logging.jsonl record."""
    step, max_steps = _steps(rec)
    changes: dict[str, Any] = {"step": step, "max_steps": max_steps}
    changes.update((attr, parse(rec[key])) for key, attr, parse in _FIELDS if key in rec)
    new = replace(progress, **{k: v for k, v in changes.items() if v is not None})
    return replace(new, remaining_s=_remaining(progress, new))


def _remaining(old: Progress, new: Progress) -> float | None:
    """Time left at the pace of the last logged interval, none before two logged steps give one. swift's own
    figure averages over the whole run, start-up and the first step's compilation included: on an H100 it said
    25 min at step 1 of a job that ended 3.5 min later. A record that gives no interval (an eval at the same
    step) keeps the last figure."""
    s0, t0, s1, t1, total = old.step, old.elapsed_s, new.step, new.elapsed_s, new.max_steps
    if s1 is not None and total is not None and s1 >= total:
        return 0.0
    if s0 is None or t0 is None:
        return None
    if s1 is None or t1 is None or total is None or s1 <= s0 or t1 <= t0:
        return old.remaining_s
    return (t1 - t0) / (s1 - s0) * max(0, total - s1)


class ProgressTail:
    """Follows one run: `poll()` folds what swift wrote since the last poll into `progress` and returns the
    milestones reached, in this order: evals, then new checkpoints.

    A restarted bot carries on with `offset` (in logging.jsonl; always a line start) and/or `resume` (the
    Progress stored for the job): milestones at or below `resume`'s step and checkpoint are not told again.
    """

    def __init__(self, run_dir: Path, *, offset: int = 0, resume: Progress | None = None) -> None:
        self.run_dir = Path(run_dir)
        self._jsonl = LineCursor(self.run_dir / LOGGING_FILE, offset)
        self._progress = resume or Progress()
        self._told_step = -1 if self._progress.step is None else self._progress.step
        self._told_eval = self._progress.eval_loss
        self._told_checkpoint = checkpoint_number(self._progress.last_checkpoint) or -1
        self._dir_mtime: int | None = None
        self._checkpoints: list[int] = []
        self.finished = False  # swift wrote its summary line

    @property
    def progress(self) -> Progress:
        return self._progress

    @property
    def offset(self) -> int:
        return self._jsonl.offset

    def poll(self, final: bool = False) -> list[Milestone]:
        """`final`: the run has ended, so a partial last line and the newest checkpoint count too."""
        found: list[Milestone] = []
        for rec in self._records(final):
            self._progress = fold(self._progress, rec)
            if (milestone := self._record_milestone(rec)) is not None:
                found.append(milestone)
        return found + self._new_checkpoints(final or self.finished)

    def _records(self, final: bool) -> Iterator[dict[str, Any]]:
        lines = self._jsonl.read_lines(final) or []
        return (rec for line in lines if (rec := _json_record(line)) is not None)

    def _record_milestone(self, rec: Mapping[str, Any]) -> Milestone | None:
        kind, step = record_kind(rec), _steps(rec)[0]
        if kind == "final":
            self.finished = True
            return None
        if kind != "eval" or step is None or step < self._told_step:
            return None
        metrics = {k: v if (f := _float(v)) is None else f for k, v in rec.items() if k.startswith("eval_")}
        if step == self._told_step and metrics.get("eval_loss") == self._told_eval:
            return None  # told before the bot restarted
        data = {"step": step, "epoch": _float(rec.get("epoch")), **metrics}
        return Milestone(MilestoneKind.EVAL, step, data)

    def _new_checkpoints(self, all_ready: bool) -> list[Milestone]:
        """checkpoint-N folders not told yet, in order, once complete (trainer_state.json written, a newer one
        begun, or the run ended). The run dir is listed again only when its mtime changed (or is fresh: coarse
        fs timestamps may hide a folder made in the tick of the last look)."""
        try:
            mtime = os.stat(self.run_dir).st_mtime_ns
        except OSError:
            return []
        if mtime != self._dir_mtime or time.time_ns() - mtime < _FRESH_NS:
            self._dir_mtime = mtime
            self._checkpoints = checkpoint_numbers(self.run_dir, above=self._told_checkpoint)
        out: list[Milestone] = []
        while self._checkpoints:
            path = self.run_dir / f"checkpoint-{self._checkpoints[0]}"
            if len(self._checkpoints) == 1 and not all_ready and not (path / CHECKPOINT_READY_FILE).exists():
                break
            n = self._checkpoints.pop(0)
            if not path.is_dir():
                continue  # rotated away (save_total_limit) before it was told
            self._told_checkpoint = n
            if not self.finished:  # swift's summary names the last checkpoint itself
                self._progress = replace(self._progress, last_checkpoint=str(path))
            out.append(Milestone(MilestoneKind.CHECKPOINT, n, {"step": n, "path": str(path)}))
        return out


def _json_record(line: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None  # a half-written line (crash) or a stray one
    return obj if isinstance(obj, dict) else None


def read_final_summary(run_dir: Path) -> Progress:
    """Where an ended run got to, from its whole logging.jsonl read once (for a job that ended while the bot
    was away); without swift's summary line the newest checkpoint-N folder stands for the last checkpoint."""
    tail = ProgressTail(run_dir)
    tail.poll(final=True)
    return tail.progress
