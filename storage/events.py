"""A job's events (its history: created, started, checkpoint, stopped, exported, ...), as typed facts.

Each kind is a frozen dataclass with its fields, in one tagged union (`EventFacts`), stored as JSON in the events
table's `facts` column (its kind in `kind`) and read back into the same type. No words here: each front end words
an event its own way (bot/words/events.py), matching every kind and ending in `assert_never`, so a kind one of them
forgets fails mypy. Rows written before the types (their `facts` empty) come back as `Told`: the text they were
stored with, shown as it is; a row no type fits (a newer bot's) as `Told` with its kind alone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from storage.actors import Actor
from storage.failure_facts import JobFailure
from storage.profile_notes import ProfileNote

SCHEMA_VERSION = 1
By = Annotated[Actor, Field(discriminator="code")]  # who did it: a person, the console, trainbot, or nobody it knows
Note = Annotated[ProfileNote, Field(discriminator="code")]


@dataclass(frozen=True, kw_only=True)
class Created:
    """The job exists; `profile_notes`: what the speed profile changed in its command (the job's page shows them
    once the notice that told them has left the outbox)."""

    by: By | None = None
    profile_notes: tuple[Note, ...] = ()
    kind: Literal["created"] = "created"


@dataclass(frozen=True, kw_only=True)
class Submitted:
    """A job created on hold was started: it joins the line."""

    by: By | None = None
    kind: Literal["submitted"] = "submitted"


@dataclass(frozen=True, kw_only=True)
class HandedOver:
    """Handed to a scheduling backend (Slurm), which keeps it in its own queue as `backend_job_id`."""

    backend: str = ""
    backend_job_id: str | None = None
    kind: Literal["handed_over"] = "handed_over"


@dataclass(frozen=True, kw_only=True)
class Started:
    host: str | None = None
    gpus: tuple[str, ...] = ()
    kind: Literal["started"] = "started"


@dataclass(frozen=True, kw_only=True)
class CheckpointSaved:
    step: int | None = None
    path: str | None = None
    kind: Literal["checkpoint"] = "checkpoint"


@dataclass(frozen=True, kw_only=True)
class EvalDone:
    step: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    kind: Literal["eval"] = "eval"


@dataclass(frozen=True, kw_only=True)
class Finished:
    step: int | None = None
    kind: Literal["finished"] = "finished"


@dataclass(frozen=True, kw_only=True)
class StopRequested:
    by: By | None = None
    kind: Literal["stop_requested"] = "stop_requested"


@dataclass(frozen=True, kw_only=True)
class LeftQueue:
    """Stopped before it started: taken out of the line."""

    by: By | None = None
    kind: Literal["left_queue"] = "left_queue"


@dataclass(frozen=True, kw_only=True)
class Stopped:
    by: By | None = None
    step: int | None = None
    kind: Literal["stopped"] = "stopped"


@dataclass(frozen=True, kw_only=True)
class Failed:
    """It failed, or could not start at all (a launch refusal as the failure's reason; `command`: what was run)."""

    failure: JobFailure
    command: str | None = None
    kind: Literal["failed"] = "failed"


@dataclass(frozen=True, kw_only=True)
class Restarted:
    """An ended job went back in line, resuming from `resume_from` (a checkpoint), or from the start (None)."""

    by: By | None = None
    resume_from: str | None = None
    kind: Literal["restarted"] = "restarted"


@dataclass(frozen=True, kw_only=True)
class Requeued:
    """Back in line: the bot stopped between taking the job from the line and launching it, and nothing started."""

    kind: Literal["requeued"] = "requeued"


@dataclass(frozen=True, kw_only=True)
class ExportStarted:
    """`again`: handed over again by a restarted bot (the first hand-over started nothing). `gpus` empty: the CPU."""

    by: By | None = None
    gpus: tuple[str, ...] = ()
    command: str = ""
    again: bool = False
    kind: Literal["export_started"] = "export_started"


@dataclass(frozen=True, kw_only=True)
class ExportFound:
    """A restarted bot found the export it had launched, and follows it."""

    kind: Literal["export_found"] = "export_found"


@dataclass(frozen=True, kw_only=True)
class Exported:
    export_dir: str = ""
    kind: Literal["exported"] = "exported"


@dataclass(frozen=True, kw_only=True)
class ExportFailed:
    """The export failed, or (`at_start`) its process could not be started at all."""

    failure: JobFailure
    at_start: bool = False
    kind: Literal["export_failed"] = "export_failed"


# why a try session ended (runner/trying.py; bot/words/tries.py words it)
TryEnd = Literal[
    "bot_restarted",
    "bot_stopped",
    "job_deleted",
    "process_ended",
    "replaced",
    "load_failed",
    "abandoned",
    "idle",
    "gpu_wanted",
    "answered",  # on Slurm: its batch job answered this try's questions and ended
]


@dataclass(frozen=True, kw_only=True)
class TrySessionStarted:
    """A try session of the job's model took its GPU from the line (`gpus`) and loads the model."""

    gpus: tuple[str, ...] = ()
    kind: Literal["try_started"] = "try_started"


@dataclass(frozen=True, kw_only=True)
class TrySessionLoaded:
    """The try session's model is loaded, after `load_s` seconds (`warm`: in the process kept warm)."""

    load_s: float = 0.0
    warm: bool = False
    kind: Literal["try_loaded"] = "try_loaded"


@dataclass(frozen=True, kw_only=True)
class TrySessionEnded:
    """The try session ended and gave its GPU back; `why` None: a reason this bot does not know."""

    why: TryEnd | None = None
    kind: Literal["try_ended"] = "try_ended"


@dataclass(frozen=True, kw_only=True)
class NoteChanged:
    """The job's note was written (`removed`: taken away) by `by`."""

    by: By | None = None
    removed: bool = False
    kind: Literal["note"] = "note"


@dataclass(frozen=True, kw_only=True)
class Told:
    """An event stored before the types (or by a newer bot): its stored kind and the text it was stored with."""

    topic: str = ""
    text: str = ""
    kind: Literal["told"] = "told"


EventFacts = (
    Created
    | Submitted
    | HandedOver
    | Started
    | CheckpointSaved
    | EvalDone
    | Finished
    | StopRequested
    | LeftQueue
    | Stopped
    | Failed
    | Restarted
    | Requeued
    | ExportStarted
    | ExportFound
    | Exported
    | ExportFailed
    | TrySessionStarted
    | TrySessionLoaded
    | TrySessionEnded
    | NoteChanged
    | Told
)

_ADAPTER: TypeAdapter[EventFacts] = TypeAdapter(Annotated[EventFacts, Field(discriminator="kind")])


@dataclass(frozen=True)
class Event:
    """One event of a job (the seed's "训练事件"), as stored."""

    job_id: str
    facts: EventFacts
    at: float = 0.0
    id: int | None = None

    @property
    def kind(self) -> str:
        """The stored kind (the events table's `kind` column)."""
        return self.facts.topic if isinstance(self.facts, Told) else self.facts.kind


def fields_of(facts: EventFacts) -> dict[str, Any]:
    """An event's fields, by name (its kind aside), as JSON values (facts as their code and fields): what the API
    shows, and what is stored."""
    fields = _ADAPTER.dump_python(facts, mode="json")
    return {name: fields[name] for name in (f.name for f in dataclasses.fields(facts)) if name != "kind"}


def encode(facts: EventFacts) -> str:
    """The events table's `facts` column: the fields and the schema version (the kind goes in `kind`)."""
    return json.dumps({"v": SCHEMA_VERSION, **fields_of(facts)})


def decode(kind: str, facts: str | None, message: str) -> EventFacts:
    """A stored event back into its type; a row of before the types, or one no type fits, is `Told`."""
    if not facts:
        return Told(topic=kind, text=message)
    try:
        fields = json.loads(facts)
        if not isinstance(fields, dict) or fields.pop("v", 0) > SCHEMA_VERSION:
            return Told(topic=kind, text=message)
        return _ADAPTER.validate_python({**fields, "kind": kind})
    except (ValueError, TypeError, ValidationError):
        return Told(topic=kind, text=message)
