"""The values that cross module lines: jobs, their states, events and notices."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from storage.actors import Actor
from storage.events import Event as Event
from storage.failure_facts import JobFailure
from storage.waiting import QueueReason


class Kind(enum.StrEnum):
    LLM = "llm"
    VLM = "vlm"


class JobState(enum.StrEnum):
    CREATED = "created"  # recorded, not yet asked to start (the seed's create-then-start; `/train ... --hold`)
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def is_active(self) -> bool:
        """Holds (or waits for) GPUs: started and not yet ended."""
        return not self.is_terminal and self is not JobState.CREATED

    @property
    def is_under_way(self) -> bool:
        """Launched and not yet ended: its process may run (a created or queued job may still be deleted)."""
        return self in (JobState.STARTING, JobState.RUNNING, JobState.STOPPING)


class ExportState(enum.StrEnum):
    NONE = "none"
    EXPORTING = "exporting"
    EXPORTED = "exported"
    EXPORT_FAILED = "export_failed"


class TryState(enum.StrEnum):
    """A try session of the job's model (runner/trying.py): waiting in line for its GPU, loading, or loaded."""

    NONE = "none"
    WAITING = "waiting"
    LOADING = "loading"
    READY = "ready"

    @property
    def holds(self) -> bool:
        """Its process may be running (and hold its GPU)."""
        return self in (TryState.LOADING, TryState.READY)


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED})
# Which state may follow which, and why, is runner/lifecycle.py's (the one state machine, its named transitions);
# the store applies a change only where the job is still in a state the transition starts from.


@dataclass(frozen=True)
class Progress:
    """Where a training run is, from logging.jsonl (None where swift has not said yet)."""

    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    epoch: float | None = None
    elapsed_s: float | None = None
    remaining_s: float | None = None
    speed_s_per_it: float | None = None
    gpu_mem_gib: float | None = None
    last_checkpoint: str | None = None
    best_checkpoint: str | None = None
    train_loss: float | None = None  # the run's mean loss, from swift's final line

    @property
    def percent(self) -> float | None:
        if self.step is None or not self.max_steps:
            return None
        return round(100.0 * self.step / self.max_steps, 1)


Purpose = Literal["train", "export", "try"]  # which of a job's processes: its training, its export, a try session


@dataclass(frozen=True)
class Run:
    """One process of a job, its training or its export: enough to find it again, also from a restarted bot."""

    pid: int | None = None
    proc_start_time: float | None = None  # with the pid: a reused pid is not taken for ours
    backend_job_id: str | None = None  # the scheduler's id (Slurm), where it has one
    log_path: str | None = None
    # this launch's own mark, recorded before anything is started: the backend finds what it started by it (the
    # launcher's claim file, the Slurm job's name), or knows for certain that nothing was (runner/launches.py)
    launch_token: str | None = None

    @property
    def log(self) -> Path | None:
        """The run's log file, where it has one."""
        return Path(self.log_path) if self.log_path else None

    @property
    def in_doubt(self) -> bool:
        """A launch was begun (its token recorded) but no process of it recorded: the bot stopped in between."""
        return self.launch_token is not None and self.pid is None and self.backend_job_id is None


@dataclass(frozen=True)
class Job:
    id: str
    kind: Kind
    state: JobState
    output_dir: str
    gpus: tuple[str, ...]
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)
    name: str = ""  # what people call it (any Unicode, no control character); the store makes it the output
    # folder's last part where none was given
    note: str = ""  # free text added later by its owner or an admin ("" none)
    export_state: ExportState = ExportState.NONE
    run_dir: str | None = None
    export_dir: str | None = None
    export_gpus: tuple[str, ...] = ()  # the GPU its export runs on, held until the export ends; empty: the CPU
    host: str | None = None
    backend: str = "local"
    train_run: Run = Run()
    export_run: Run = Run()
    progress: Progress = field(default_factory=Progress)
    exit_code: int | None = None
    failure: JobFailure | None = None  # why it failed or could not start (its `error_message` column, as JSON)
    stopped_by: Actor | None = None
    user_id: str | None = None
    slack_channel: str | None = None  # the Slack channel the request came from (its card goes there): Slack's to read
    queue_reason: QueueReason | None = None
    idempotency_key: str | None = None  # a client's key for its create request: a retry gets this job back
    idempotency_fingerprint: str | None = None  # the request the key came with (runner/job_request.fingerprint)
    # a stop under way (runner/lifecycle.stop_requested): SIGTERM to the process group from `stop_term_at`, SIGKILL
    # from `stop_kill_at` (epoch seconds, so a restarted bot keeps the clock); when the SIGINT reached the trainer
    stop_term_at: float | None = None
    stop_kill_at: float | None = None
    stop_interrupted_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    try_state: TryState = TryState.NONE  # a session of `/train try` (runner/trying.py)
    try_gpus: tuple[str, ...] = ()  # the GPU it holds (or waits for); ("cpu",): none
    try_run: Run = Run()
    try_seq: float | None = None  # its place in the queue's line while it waits (between the jobs' queue_seq)

    def replace(self, **changes: Any) -> Job:
        return dataclasses.replace(self, **changes)

    @property
    def duration_s(self) -> float | None:
        """How long its training ran: from start to end, or so far while it runs (None: never started)."""
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else (self.updated_at if self.state.is_active else None)
        return None if end is None else max(0.0, end - self.started_at)

    @property
    def gpu_hours(self) -> float | None:
        """GPU time it took: its duration times its GPUs (a CPU job takes none)."""
        gpus = 0 if self.gpus == ("cpu",) else len(self.gpus)
        return None if self.duration_s is None else self.duration_s * gpus / 3600

    def run(self, purpose: Purpose) -> Run:
        return {"train": self.train_run, "export": self.export_run, "try": self.try_run}[purpose]
