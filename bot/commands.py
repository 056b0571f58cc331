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

from runner.job_request import JobRequest
from storage.models import Kind

JobAction: TypeAlias = Literal["start", "stop", "export", "status", "show", "logs", "delete"]
JOB_ACTIONS: tuple[JobAction, ...] = get_args(JobAction)
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
        return JobRequest(self.kind, self.gpus, self.output_dir, self.overrides, user_id, channel_id, self.profile,
                          self.hold, self.name)


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
class ListJobs:
    kind: Kind | None = None
    state: str | None = None  # a JobState value or "active"
    text: str | None = None  # `name=`: a case-insensitive substring of the name, output folder, owner or id


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


Command: TypeAlias = CreateJob | JobCommand | AddNote | ListJobs | ShowStatus | ShowGpus | Help


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
        words += [] if command.name is None else [f"name={command.name}"]
        return " ".join(shlex.quote(w) for w in words)
    if isinstance(command, JobCommand):
        extra = [f"lines={command.lines}"] * (command.lines is not None) + ["full"] * command.full
        return " ".join([command.action, command.job_id, *extra])
    if isinstance(command, AddNote):
        return f"note {command.job_id} {command.text}"
    if isinstance(command, ListJobs):
        kind = [str(command.kind)] if command.kind else []
        text = [shlex.quote(f"name={command.text}")] if command.text is not None else []
        return " ".join(["list", *kind, *([f"state={command.state}"] if command.state else []), *text])
    if isinstance(command, Help):
        return "help" + (f" {command.topic}" if command.topic else "")
    if isinstance(command, ShowStatus):
        return "status" + (f" {shlex.quote(command.ref)}" if command.ref is not None else "")
    return "gpus"


def out_example(output_root: Path, base_dir: Path) -> str:
    """A folder people may give as the output folder (relative to base_dir where it can be), for examples."""
    base = norm(base_dir)
    target = norm(base / output_root) / "my-run"
    return str(target.relative_to(base)) if target.is_relative_to(base) else str(target)


def norm(path: Path) -> Path:
    """A path with `//`, `.` and `..` folded, as text (no disk read)."""
    return Path(os.path.normpath(re.sub("/+", "/", str(path))))
