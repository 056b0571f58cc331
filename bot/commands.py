"""The commands of the `/train` language, as typed values (what bot/grammar.py parses text into), and back.

`unparse` writes a command's canonical text, with parse(unparse(c)) == c: for cards and re-runs.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias, get_args

from storage.models import Kind

JobAction: TypeAlias = Literal["start", "stop", "export", "status", "show", "logs", "delete"]
JOB_ACTIONS: tuple[JobAction, ...] = get_args(JobAction)


@dataclass(frozen=True)
class CreateJob:
    kind: Kind
    gpus: tuple[str, ...]  # GPU numbers as strings ("0", "1"), or ("cpu",)
    output_dir: Path  # normalised, joined to base_dir, strictly inside the output root
    overrides: dict[str, str]  # canonical VLM key -> normalised value; always empty for LLM
    dry_run: bool = False
    profile: str = "fast"
    hold: bool = False  # `--hold`: record the job only; `start <id>` starts it


@dataclass(frozen=True)
class JobCommand:
    action: JobAction
    job_id: str
    lines: int | None = None  # logs only
    full: bool = False  # logs only: the whole log as a file


@dataclass(frozen=True)
class TryJob:
    """`try <id> [checkpoint=N] [gpu=X] [max_tokens=N] [question]`: ask the job's model (no question: the recipe's
    own check)."""

    job_id: str
    question: str | None = None  # as typed, the rest of the line
    checkpoint: int | None = None
    gpus: tuple[str, ...] | None = None  # ("0",) or ("cpu",); None: the job's own GPU
    max_tokens: int | None = None  # the most tokens to generate; None: the runner's default


@dataclass(frozen=True)
class ListJobs:
    kind: Kind | None = None
    state: str | None = None  # a JobState value or "active"


@dataclass(frozen=True)
class ShowStatus:
    """`status` without an id: the active jobs at a glance."""


@dataclass(frozen=True)
class ShowGpus:
    pass


@dataclass(frozen=True)
class Help:
    topic: str | None = None


Command: TypeAlias = CreateJob | JobCommand | TryJob | ListJobs | ShowStatus | ShowGpus | Help


@dataclass(frozen=True)
class Rejection:
    message: str
    example: str | None = None  # a whole command that parses, without the leading `/train`

    def text(self) -> str:
        return self.message + (f"\nTry: `/train {self.example}`" if self.example else "")



def unparse(command: Command, *, base_dir: Path) -> str:
    """The canonical text (after `/train`) of a command, with parse(unparse(c)) == c: for cards, re-runs."""
    if isinstance(command, CreateJob):
        out, base = command.output_dir, norm(base_dir)
        words = [str(command.kind), "gpu=" + ",".join(command.gpus),
                 "out=" + str(out.relative_to(base) if out.is_relative_to(base) else out)]
        words += [] if command.profile == "fast" else [f"profile={command.profile}"]
        words += [f"{k}={v}" for k, v in command.overrides.items()] + ["--dry-run"] * command.dry_run
        words += ["--hold"] * command.hold
        return " ".join(shlex.quote(w) for w in words)
    if isinstance(command, JobCommand):
        extra = [f"lines={command.lines}"] * (command.lines is not None) + ["full"] * command.full
        return " ".join([command.action, command.job_id, *extra])
    if isinstance(command, TryJob):
        options = [f"checkpoint={command.checkpoint}"] * (command.checkpoint is not None)
        options += [f"gpu={','.join(command.gpus)}"] if command.gpus else []
        options += [f"max_tokens={command.max_tokens}"] if command.max_tokens is not None else []
        return " ".join(["try", command.job_id, *options, *([command.question] if command.question else [])])
    if isinstance(command, ListJobs):
        kind = [str(command.kind)] if command.kind else []
        return " ".join(["list", *kind, *([f"state={command.state}"] if command.state else [])])
    if isinstance(command, Help):
        return "help" + (f" {command.topic}" if command.topic else "")
    return "status" if isinstance(command, ShowStatus) else "gpus"


def norm(path: Path) -> Path:
    """A path with `//`, `.` and `..` folded, as text (no disk read)."""
    return Path(os.path.normpath(re.sub("/+", "/", str(path))))
