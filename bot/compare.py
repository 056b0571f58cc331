"""Two to eight runs side by side: their logged metrics by step, and what differs between them (the settings they
ran with, how long they ran, where their losses ended). Facts only: the web page, Slack and the console word and
draw them (bot/http/web/templates/compare.html, bot/words/texts.comparison_text, bot/charts.compare_png).

A run's settings are read from the command it ran (every `--flag` of `swift sft`, and the variables set for it),
so whatever made two runs differ shows, whether a VLM override, a profile or a change of the config file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot.chat.commands import MAX_RUNS, MIN_RUNS
from runner.metrics import READER, Metrics
from storage.errors import JobError
from storage.jobs import JobStore
from storage.models import Job

_NOT_SETTINGS = frozenset({"output_dir", "resume_from_checkpoint", "logging_dir"})  # each run's own place


class WrongCount(JobError):
    """Not 2 to 8 different jobs: `ids` as given (duplicates dropped)."""

    def __init__(self, ids: tuple[str, ...]) -> None:
        super().__init__(f"{len(ids)} jobs to compare; {MIN_RUNS} to {MAX_RUNS} will do")
        self.ids = ids


@dataclass(frozen=True)
class Compared:
    """One run of a comparison: the job and its metrics."""

    job: Job
    metrics: Metrics

    @property
    def duration_s(self) -> float | None:
        """How long it ran (so far, if it runs)."""
        start = self.job.started_at
        if start is None:
            return None
        return (self.job.finished_at or time.time()) - start

    @property
    def steps(self) -> str:
        p = self.job.progress
        return "" if p.step is None else f"{p.step}/{p.max_steps or '?'}"

    @property
    def final_loss(self) -> float | None:
        return self.metrics.last("loss") if self.metrics.series.get("loss") else self.job.progress.loss

    @property
    def final_eval_loss(self) -> float | None:
        return self.metrics.last("eval_loss") if self.metrics.series.get("eval_loss") else self.job.progress.eval_loss

    @property
    def best_eval_loss(self) -> float | None:
        return self.metrics.lowest("eval_loss")


@dataclass(frozen=True)
class Difference:
    """A setting that is not the same in every run: its name (a swift flag, `$VARIABLE` or `GPUs`) and each
    run's value (None: not set)."""

    name: str
    values: tuple[str | None, ...]


@dataclass(frozen=True)
class Comparison:
    runs: tuple[Compared, ...]
    differences: tuple[Difference, ...]
    same: int  # how many settings every run has alike

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(r.job.id for r in self.runs)


def distinct(ids: Sequence[str]) -> tuple[str, ...]:
    """The ids in the order given, each once; WrongCount unless 2 to 8 remain."""
    kept = tuple(dict.fromkeys(i.strip().lower() for i in ids if i.strip()))
    if not MIN_RUNS <= len(kept) <= MAX_RUNS:
        raise WrongCount(kept)
    return kept


async def compare(store: JobStore, ids: Sequence[str]) -> Comparison:
    """The comparison of these jobs (JobNotFound for an id the store does not know; WrongCount)."""
    jobs = [await store.require(job_id) for job_id in distinct(ids)]
    metrics = await asyncio.to_thread(lambda: [READER.of_job(job) for job in jobs])
    runs = tuple(Compared(job, m) for job, m in zip(jobs, metrics, strict=True))
    differences, same = _differences([settings(job) for job in jobs])
    return Comparison(runs, differences, same)


def settings(job: Job) -> dict[str, str]:
    """What a job ran with: its recipe, GPUs, every flag of its command after `sft` (a flag's values joined by
    spaces), and the variables set for it."""
    found = {"recipe": str(job.kind), "GPUs": ",".join(job.gpus)}
    argv = list(job.argv)
    words = argv[argv.index("sft") + 1 :] if "sft" in argv else []
    key: str | None = None
    for word in words:
        if word.startswith("--"):
            key = word[2:]
            found[key] = ""
        elif key is not None:
            found[key] = f"{found[key]} {word}".strip()
    for name, value in sorted(job.env.items()):
        found[f"${name}"] = value
    return {k: v for k, v in found.items() if k not in _NOT_SETTINGS}


def _differences(each: list[dict[str, str]]) -> tuple[tuple[Difference, ...], int]:
    names = list(dict.fromkeys(name for one in each for name in one))  # in the order of the first command
    differ = [
        Difference(name, tuple(one.get(name) for one in each))
        for name in names
        if len({one.get(name) for one in each}) > 1
    ]
    return tuple(differ), len(names) - len(differ)
