"""The commands of the `/train` language, as typed values: what bot/chat/grammar.py parses text into."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias, get_args

from runner.job_request import JobRequest
from storage.models import Kind

JobAction: TypeAlias = Literal["start", "stop", "export", "status", "show", "logs", "delete"]
JOB_ACTIONS: tuple[JobAction, ...] = get_args(JobAction)
MIN_RUNS, MAX_RUNS = 2, 8  # how many jobs `compare` takes
MAX_LOG_LINES = 10_000  # the most lines of a log a person may ask for (`logs <id> lines=N`, `?lines=N`)


@dataclass(frozen=True)
class CreateJob:
    kind: Kind
    gpus: tuple[str, ...]  # GPU numbers as strings ("0", "1"), or ("cpu",)
    output_dir: Path  # normalised, joined to base_dir, strictly inside the output root
    overrides: dict[str, str]  # canonical VLM key -> normalised value; always empty for LLM
    dry_run: bool = False
    profile: str = "fast"
    hold: bool = False  # `--hold`: record the job only; `start <id>` starts it
    name: str | None = None  # `name=`: what people call it (None: its output folder's last part)

    def request(self, user_id: str | None, channel_id: str | None) -> JobRequest:
        """The job this command asks for, as every front end asks for one (runner/job_request.py)."""
        return JobRequest(
            self.kind,
            self.gpus,
            self.output_dir,
            self.overrides,
            user_id,
            channel_id,
            self.profile,
            self.hold,
            self.name,
        )


@dataclass(frozen=True)
class JobCommand:
    action: JobAction
    job_id: str
    lines: int | None = None  # logs only
    full: bool = False  # logs only: the whole log as a file


@dataclass(frozen=True)
class AddNote:
    """`note <id> <text>`: the job's note becomes `text` (free text, as typed: the rest of the line)."""

    job_id: str
    text: str


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
    text: str | None = None  # `name=`: a case-insensitive substring of the name, output folder, owner or id


@dataclass(frozen=True)
class CompareJobs:
    """`compare <id> <id> ...`: 2 to 8 different jobs, in the order given."""

    job_ids: tuple[str, ...]


@dataclass(frozen=True)
class ShowStatus:
    """`status` without an id: the active jobs at a glance; with a name (`ref`: any word that is no job id), the
    job of that name, or the jobs it finds."""

    ref: str | None = None


@dataclass(frozen=True)
class ShowGpus:
    pass


@dataclass(frozen=True)
class Help:
    topic: str | None = None


Command: TypeAlias = CreateJob | JobCommand | AddNote | TryJob | ListJobs | CompareJobs | ShowStatus | ShowGpus | Help


@dataclass(frozen=True)
class Rejection:
    message: str
    example: str | None = None  # a whole command that parses, without the leading `/train`

    def text(self) -> str:
        return self.message + (f"\nTry: `/train {self.example}`" if self.example else "")


def out_example(output_root: Path, base_dir: Path) -> str:
    """A folder people may give as the output folder (relative to base_dir where it can be), for examples."""
    base = norm(base_dir)
    target = norm(base / output_root) / "my-run"
    return str(target.relative_to(base)) if target.is_relative_to(base) else str(target)


def norm(path: Path) -> Path:
    """A path with `//`, `.` and `..` folded, as text (no disk read)."""
    return Path(os.path.normpath(re.sub("/+", "/", str(path))))
