"""What people must be told, as typed facts: one frozen dataclass per kind of notice, in one tagged union.

A notice waits in the outbox until every front end that reads it has (storage/outbox.py). It is stored as JSON: its
kind (the outbox's `topic` column) and its fields with the schema version (`"v"`), and read back into the same type.
Rows written before the version existed (v0: ad-hoc dicts) and v1 rows (a failure, a queue reason, a profile note and
who stopped a job as words) are read into today's types, their words kept as legacy facts shown as they are; a row no
type fits (written by a newer bot, say) comes back as `Unreadable`, never as an error. Every renderer matches on
`NoticeFacts` and ends in `assert_never`, so a kind that one of them forgets fails mypy, not a user.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from storage.actors import CODEC as ACTORS
from storage.actors import Actor, User
from storage.failure_facts import JobFailure, LegacyFailure
from storage.profile_notes import LegacyNote, ProfileNote
from storage.waiting import LegacyReason, QueueReason

SCHEMA_VERSION = 2
Note = Annotated[ProfileNote, Field(discriminator="code")]
Reason = Annotated[QueueReason, Field(discriminator="code")]
By = Annotated[Actor, Field(discriminator="code")]


@dataclass(frozen=True, kw_only=True)
class JobCreated:
    """The job exists: its card goes up; the command it will run and what the speed profile changed in it."""

    command: str = ""
    profile: str | None = None
    profile_notes: tuple[Note, ...] = ()
    kind: Literal["job_created"] = "job_created"


@dataclass(frozen=True, kw_only=True)
class JobSubmitted:
    """A job created on hold was started (it joins the queue)."""

    by: str | None = None
    kind: Literal["job_submitted"] = "job_submitted"


@dataclass(frozen=True, kw_only=True)
class JobQueued:
    """It waits: for GPUs here (`position` in our line, `reason`), or in a scheduler's queue (`backend_job_id`).
    `moved_up`: a job ahead of it left the line, and `position` is its new place."""

    reason: Reason | None = None
    position: int | None = None
    moved_up: bool = False
    backend: str | None = None
    backend_job_id: str | None = None
    pending_reason: Reason | None = None
    kind: Literal["job_queued"] = "job_queued"


@dataclass(frozen=True, kw_only=True)
class JobStarted:
    command: str = ""
    host: str | None = None
    gpus: tuple[str, ...] = ()
    kind: Literal["job_started"] = "job_started"


@dataclass(frozen=True, kw_only=True)
class JobRestarted:
    """An ended job went back in line, resuming from `resume_from` (a checkpoint) or from the start."""

    by: str | None = None
    resume_from: str | None = None
    command: str = ""
    kind: Literal["job_restarted"] = "job_restarted"


@dataclass(frozen=True, kw_only=True)
class CheckpointSaved:
    step: int | None = None
    path: str | None = None
    kind: Literal["checkpoint"] = "checkpoint"


@dataclass(frozen=True, kw_only=True)
class EvalDone:
    step: int | None = None
    epoch: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # eval_loss, eval_token_acc, ...
    kind: Literal["eval"] = "eval"

    @property
    def eval_loss(self) -> float | None:
        return self.metrics.get("eval_loss")


@dataclass(frozen=True, kw_only=True)
class StopRequested:
    by: str | None = None
    kind: Literal["job_stopping"] = "job_stopping"


@dataclass(frozen=True, kw_only=True)
class LeftQueue:
    """Stopped before it started: taken out of the line."""

    by: str | None = None
    kind: Literal["left_queue"] = "left_queue"


@dataclass(frozen=True)
class NotApplied:
    """A speed lever that swift's process could not apply (runner/swift_levers.py): the job went on without it.
    `lever`: its code (e.g. "padding_free_sdpa", "warm_start"); `detail`: what was not as it expected, as logged."""

    lever: str
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class RunEnd:
    """What every end of a training run tells: how long, how far, the last loss and checkpoint, and the speed
    levers it ran without."""

    duration_s: float | None = None
    final_loss: float | None = None
    step: int | None = None
    max_steps: int | None = None
    last_checkpoint: str | None = None
    run_dir: str | None = None
    output_dir: str | None = None
    not_applied: tuple[NotApplied, ...] = ()


@dataclass(frozen=True, kw_only=True)
class JobSucceeded(RunEnd):
    kind: Literal["job_succeeded"] = "job_succeeded"


@dataclass(frozen=True, kw_only=True)
class JobStopped(RunEnd):
    by: By | None = None
    kind: Literal["job_stopped"] = "job_stopped"


@dataclass(frozen=True, kw_only=True)
class JobFailed(RunEnd):
    """It failed, or could not start (a launch refusal as its reason, no run). `detail`: the log's key line,
    `tail`: the log lines that show why."""

    failure: JobFailure
    detail: str | None = None
    tail: tuple[str, ...] = ()
    kind: Literal["job_failed"] = "job_failed"


@dataclass(frozen=True, kw_only=True)
class ExportStarted:
    by: str | None = None
    checkpoint: str | None = None
    command: str = ""
    gpus: tuple[str, ...] = ()  # where it runs: its GPU, or the CPU (empty)
    kind: Literal["export_started"] = "export_started"


@dataclass(frozen=True, kw_only=True)
class ExportSucceeded:
    export_dir: str = ""
    not_applied: tuple[NotApplied, ...] = ()
    kind: Literal["export_succeeded"] = "export_succeeded"


@dataclass(frozen=True, kw_only=True)
class ExportFailed:
    failure: JobFailure
    tail: tuple[str, ...] = ()
    not_applied: tuple[NotApplied, ...] = ()
    kind: Literal["export_failed"] = "export_failed"


@dataclass(frozen=True, kw_only=True)
class JobDeleted:
    """The row is gone (a front end that showed the job, a Slack card say, marks it deleted)."""

    by: str | None = None
    name: str | None = None  # the row is gone: what the job was called, for the words
    kind: Literal["job_deleted"] = "job_deleted"


@dataclass(frozen=True, kw_only=True)
class Unreadable:
    """A stored notice no type fits (a newer bot wrote it, say): told as its topic alone."""

    topic: str = ""
    kind: Literal["unreadable"] = "unreadable"


NoticeFacts = (
    JobCreated
    | JobSubmitted
    | JobQueued
    | JobStarted
    | JobRestarted
    | CheckpointSaved
    | EvalDone
    | StopRequested
    | LeftQueue
    | JobSucceeded
    | JobStopped
    | JobFailed
    | ExportStarted
    | ExportSucceeded
    | ExportFailed
    | JobDeleted
    | Unreadable
)
RUN_ENDS = (JobSucceeded, JobStopped, JobFailed)

_ADAPTER: TypeAdapter[NoticeFacts] = TypeAdapter(Annotated[NoticeFacts, Field(discriminator="kind")])


@dataclass(frozen=True)
class Notice:
    """A notice in the outbox: whose it is, what it says, and how its delivery to the reader that read it stands."""

    job_id: str
    facts: NoticeFacts
    id: int | None = None
    created_at: float = 0.0
    attempts: int = 0
    next_attempt_at: float = 0.0
    delivered_at: float | None = None

    @property
    def topic(self) -> str:
        """The stored kind (for logs, message metadata and the outbox's column)."""
        return self.facts.topic if isinstance(self.facts, Unreadable) else self.facts.kind


def encode(facts: NoticeFacts) -> str:
    """The outbox's `data` column: the fields and the schema version (the kind goes in `topic`)."""
    fields = _ADAPTER.dump_python(facts, mode="json")
    fields.pop("kind")
    return json.dumps({"v": SCHEMA_VERSION, **fields})


def decode(topic: str, data: str) -> NoticeFacts:
    """A stored notice back into its type; old rows are upgraded, and what no type fits is `Unreadable`."""
    try:
        fields = json.loads(data)
        if not isinstance(fields, dict) or (version := fields.pop("v", 0)) > SCHEMA_VERSION:
            return Unreadable(topic=topic)
        if version == 0:
            topic, fields = _from_v0(topic, fields)
        if version <= 1:
            fields = _from_v1(topic, fields)
        return _ADAPTER.validate_python({**fields, "kind": topic})
    except (ValueError, TypeError, ValidationError):
        return Unreadable(topic=topic)


def _from_v0(topic: str, d: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Rows written before the types: a queued job's stop, the failure's class and an eval's metrics moved."""
    if topic == "job_stopped" and d.pop("was_queued", False):
        return "left_queue", {"by": d.get("by")}
    if topic == "job_failed" and "class" in d:
        d["failure_class"] = d.pop("class")
    if topic == "eval":
        metrics = {k: v for k, v in d.items() if k.startswith("eval_") and isinstance(v, int | float)}
        return topic, {"step": d.get("step"), "epoch": d.get("epoch"), "metrics": metrics}
    return topic, {k: v for k, v in d.items() if v is not None}


def _from_v1(topic: str, d: dict[str, Any]) -> dict[str, Any]:
    """Rows whose failure, queue reasons, profile notes and stopper were words: kept as legacy facts."""
    if topic in ("job_failed", "export_failed"):
        failure = LegacyFailure(str(d.pop("summary", "")), d.pop("hint", None) or None)
        d.pop("failure_class", None)
        d["failure"] = dataclasses.asdict(JobFailure(failure))
    if topic == "job_queued":
        for name in ("reason", "pending_reason"):
            if isinstance(d.get(name), str):
                d[name] = dataclasses.asdict(LegacyReason(d[name]))
    if topic == "job_created":
        d["profile_notes"] = [dataclasses.asdict(LegacyNote(str(n))) for n in d.get("profile_notes") or ()]
    if topic == "job_stopped" and (by := d.get("by")) is not None:
        d["by"] = ACTORS.to_python(ACTORS.load(str(by)) or User(str(by)))  # a user id (or words: shown as they are)
    return d
