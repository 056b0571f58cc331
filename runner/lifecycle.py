"""A job's life: the one state machine and its named transitions.

Each transition is a pure function of the job (and the facts it needs) that returns a `Change`: the states it may
start from, the state it leads to, the row's fields it sets or clears, its typed event (storage/events.py) and the
notice people must get (storage/notices.py). `apply` writes a change in one transaction, and only while the job is
still in a state the transition starts from (storage.errors.StaleState otherwise): a race is refused, never written
over. No other module picks a job's next state, its event or its notice.

    created --queue--> queued --launch--> starting --running--> running --succeed/fail--> succeeded | failed
                         |  ^                  |                   |
                 leave_queue `--requeue--------'             stop_requested --> stopping --stopped--> stopped
    failed | stopped --restart--> queued (a succeeded job is not trained again: it is exported)

The export's states and a try session's, beside the job's own on its row, are runner/lifecycle_side.py's, in the
same shape (a `Change` applied here).

Adding a state or a transition: here (the state in storage/models.JobState), then its words in bot/ (mypy names
every renderer that does not match the new event or notice kind); which actions it allows is runner/actions.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.failures import Failure
from runner.progress import Milestone, MilestoneKind
from storage import events as ev
from storage import notices as nt
from storage.actors import Actor, actor
from storage.failure_facts import JobFailure, LaunchRefusal
from storage.jobs import JobStore
from storage.models import ExportState, Job, JobState, Progress, Run
from storage.profile_notes import ProfileNote
from storage.waiting import QueueReason, Submitted

S = JobState
Levers = tuple[nt.NotApplied, ...]
UNDER_WAY = frozenset({S.STARTING, S.RUNNING, S.STOPPING})
ENDED = frozenset({S.SUCCEEDED, S.FAILED, S.STOPPED})


@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[JobState]
    target: JobState


QUEUE = Transition("queue", frozenset({S.CREATED}), S.QUEUED)
LAUNCH = Transition("launch", frozenset({S.QUEUED}), S.STARTING)
REQUEUE = Transition("requeue", frozenset({S.QUEUED, S.STARTING}), S.QUEUED)  # a launch that started nothing
RUNNING = Transition("running", frozenset({S.QUEUED, S.STARTING}), S.RUNNING)  # from queued: Slurm started it
SUCCEED = Transition("succeed", UNDER_WAY, S.SUCCEEDED)
FAIL = Transition("fail", frozenset({S.QUEUED}) | UNDER_WAY, S.FAILED)  # queued: Slurm refused it
STOP_REQUESTED = Transition("stop_requested", frozenset({S.STARTING, S.RUNNING}), S.STOPPING)
LEAVE_QUEUE = Transition("leave_queue", frozenset({S.QUEUED}), S.STOPPED)
STOPPED = Transition("stopped", frozenset({S.QUEUED}) | UNDER_WAY, S.STOPPED)  # queued: Slurm's job interrupted
RESTART = Transition("restart", frozenset({S.FAILED, S.STOPPED}), S.QUEUED)
TRANSITIONS = (QUEUE, LAUNCH, REQUEUE, RUNNING, SUCCEED, FAIL, STOP_REQUESTED, LEAVE_QUEUE, STOPPED, RESTART)


def machine() -> dict[JobState, frozenset[JobState]]:
    """Which state may follow which (for docs and tests): the transitions' edges."""
    return {s: frozenset(t.target for t in TRANSITIONS if s in t.sources and t.target is not s) for s in JobState}


@dataclass(frozen=True)
class Change:
    """What one transition does to a job. `expect`: the states it starts from (None: a change of fields only,
    in any state); `fields`: the row's columns it sets (None clears one)."""

    expect: frozenset[JobState] | None = None
    state: JobState | None = None
    expect_export: frozenset[ExportState] | None = None
    export_state: ExportState | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    event: ev.EventFacts | None = None
    notice: nt.NoticeFacts | None = None
    once_per_run: bool = False  # the event and notice only if the run has not had them yet (JobStore.update)


async def apply(store: JobStore, job_id: str, change: Change) -> Job:
    """Write a change (its fields, state, event and notice) in one transaction."""
    return await store.update(
        job_id,
        state=change.state,
        expect=change.expect,
        export_state=change.export_state,
        expect_export=change.expect_export,
        event=change.event,
        notice=nt.Notice(job_id, change.notice) if change.notice is not None else None,
        once_per_run=change.once_per_run,
        **change.fields,
    )


def _to(
    t: Transition, *, event: ev.EventFacts | None = None, notice: nt.NoticeFacts | None = None, **fields: Any
) -> Change:
    return Change(expect=t.sources, state=t.target, fields=fields, event=event, notice=notice)


# ---- joining the line ------------------------------------------------------------------------------------------


def created(
    by: str | None, command: str, profile: str | None, notes: tuple[ProfileNote, ...]
) -> tuple[ev.Created, nt.JobCreated]:
    """A new job's first event and notice (the store writes them with the job, `created` or `queued`); the event
    keeps the profile's notes too (the notice leaves the outbox)."""
    return (
        ev.Created(by=actor(by), profile_notes=notes),
        nt.JobCreated(command=command, profile=profile, profile_notes=notes),
    )


def queue(by: str | None) -> Change:
    """A job created on hold is started: it joins the line."""
    return _to(QUEUE, event=ev.Submitted(by=actor(by)), notice=nt.JobSubmitted(by=by))


def waiting(job: Job, reason: QueueReason | None, position: int | None, *, moved_up: bool = False) -> Change:
    """Why it waits and its place in line; told the first time, and when a job ahead of it left the line."""
    told = moved_up or job.queue_reason is None
    notice = nt.JobQueued(reason=reason, position=position, moved_up=moved_up) if told else None
    return Change(expect=frozenset({S.QUEUED}), fields={"queue_reason": reason}, notice=notice)


def pending(reason: QueueReason | None) -> Change:
    """A scheduler's (Slurm's) reason for keeping it in its queue."""
    return Change(expect=frozenset({S.QUEUED}), fields={"queue_reason": reason})


def restart(job: Job, by: str | None, argv: tuple[str, ...], env: dict[str, str], command: str) -> Change:
    """An ended job back in line, as a new run from its last checkpoint (if any): what the last run left is
    cleared, its log kept (the new run appends to it)."""
    resume = job.progress.last_checkpoint
    return _to(
        RESTART,
        event=ev.Restarted(by=actor(by), resume_from=resume),
        notice=nt.JobRestarted(by=by, resume_from=resume, command=command),
        argv=argv,
        env=env,
        train_run=Run(log_path=job.train_run.log_path),
        **_RUN_LEFT_CLEARED,
    )


_RUN_LEFT_CLEARED: dict[str, Any] = {
    "failure": None,
    "exit_code": None,
    "stopped_by": None,
    "queue_reason": None,
    "finished_at": None,
    "run_dir": None,
    "stop_term_at": None,
    "stop_kill_at": None,
    "stop_interrupted_at": None,
}


# ---- launch ----------------------------------------------------------------------------------------------------


def launch(run: Run, *, scheduled: bool) -> Change:
    """Taken from the line: its launch (`run`: its token, no process yet) recorded before anything starts. A job
    for a scheduling backend (Slurm) stays queued: it waits in that backend's queue."""
    if scheduled:
        return Change(expect=frozenset({S.QUEUED}), fields={"train_run": run})
    return _to(LAUNCH, queue_reason=None, train_run=run)


def launched(job: Job, run: Run, host: str) -> Change:
    """What a launch started (or, after a restart of the bot, had started): its process, to find it again."""
    progress = job.progress if job.progress.last_checkpoint else Progress()
    return Change(fields={"train_run": run, "host": host, "progress": progress})


def handed_over(backend: str, backend_job_id: str | None, pending_reason: QueueReason | None) -> Change:
    """A scheduling backend (Slurm) took it into its own queue (its reason for keeping it there, where it gave one
    already)."""
    reason = pending_reason or Submitted(backend, backend_job_id or "")
    return Change(
        expect=frozenset({S.QUEUED}),
        fields={"queue_reason": reason},
        event=ev.HandedOver(backend=backend, backend_job_id=backend_job_id),
        notice=nt.JobQueued(backend=backend, backend_job_id=backend_job_id, pending_reason=pending_reason),
    )


def running(job: Job, started_at: float, command: str) -> Change:
    return _to(
        RUNNING,
        event=ev.Started(host=job.host, gpus=job.gpus),
        notice=nt.JobStarted(command=command, host=job.host, gpus=job.gpus),
        started_at=started_at,
        queue_reason=None,
    )


def launch_failed(refusal: LaunchRefusal, command: str, now: float) -> Change:
    """Its process could not be started at all (`command`: what was run, if anything): it fails before anything
    runs."""
    failed = JobFailure(refusal)
    return _to(
        FAIL,
        event=ev.Failed(failure=failed, command=command or None),
        notice=nt.JobFailed(failure=failed),
        failure=failed,
        finished_at=now,
    )


def requeue(job: Job) -> Change:
    """The bot stopped between taking the job from the line and launching it, and nothing started: back in line."""
    return _to(REQUEUE, event=ev.Requeued(), train_run=Run(log_path=job.train_run.log_path))


# ---- while it runs ---------------------------------------------------------------------------------------------


def milestone(m: Milestone) -> Change:
    """A checkpoint or an eval: an event and a notice, while the job is under way, once per run (a console beside
    the bot watches the same run: neither tells a milestone after the job's end, nor one the other has told)."""
    if m.kind is MilestoneKind.CHECKPOINT:
        path = m.data.get("path")
        return Change(
            expect=UNDER_WAY,
            once_per_run=True,
            event=ev.CheckpointSaved(step=m.step, path=path),
            notice=nt.CheckpointSaved(step=m.step, path=path),
        )
    metrics = {k: float(v) for k, v in m.data.items() if k.startswith("eval_") and isinstance(v, int | float)}
    epoch = m.data.get("epoch")
    return Change(
        expect=UNDER_WAY,
        once_per_run=True,
        event=ev.EvalDone(step=m.step, metrics=metrics),
        notice=nt.EvalDone(step=m.step, epoch=epoch if isinstance(epoch, float) else None, metrics=metrics),
    )


# ---- stop ------------------------------------------------------------------------------------------------------


def leave_queue(by: str | None, now: float) -> Change:
    """Stopped before it started: out of the line."""
    return _to(
        LEAVE_QUEUE,
        event=ev.LeftQueue(by=actor(by)),
        notice=nt.LeftQueue(by=by),
        stopped_by=actor(by),
        finished_at=now,
        queue_reason=None,
    )


def stop_requested(by: str | None, now: float, stop_grace_s: float, term_grace_s: float) -> Change:
    """A stop of a launched job: SIGINT to its trainer now, the deadlines of SIGTERM and SIGKILL on the row."""
    return _to(
        STOP_REQUESTED,
        event=ev.StopRequested(by=actor(by)),
        notice=nt.StopRequested(by=by),
        stopped_by=actor(by),
        **stop_clock(now, stop_grace_s, term_grace_s),
    )


def stop_clock(now: float, stop_grace_s: float, term_grace_s: float) -> dict[str, Any]:
    """A stop's deadlines from `now` (also for a job stopped by a bot that kept them only in memory)."""
    return {
        "stop_term_at": now + stop_grace_s,
        "stop_kill_at": now + stop_grace_s + term_grace_s,
        "stop_interrupted_at": None,
    }


def interrupted(now: float) -> Change:
    """The stop's SIGINT reached the trainer (it is not sent again)."""
    return Change(expect=frozenset({S.STOPPING}), fields={"stop_interrupted_at": now})


# ---- how it ended ----------------------------------------------------------------------------------------------

# `levers`: the speed levers the run went without (runner/levers.not_applied), told with its end


def succeed(job: Job, progress: Progress, returncode: int | None, now: float, levers: Levers = ()) -> Change:
    return _to(
        SUCCEED,
        event=ev.Finished(step=progress.step),
        notice=nt.JobSucceeded(**_run_end(job, progress, now, levers)),
        **_ended(progress, returncode, now),
    )


def stopped(
    job: Job, by: Actor | None, progress: Progress, returncode: int | None, now: float, levers: Levers = ()
) -> Change:
    return _to(
        STOPPED,
        event=ev.Stopped(by=by, step=progress.step),
        notice=nt.JobStopped(**_run_end(job, progress, now, levers), by=by),
        stopped_by=by,
        **_ended(progress, returncode, now),
    )


def fail(
    job: Job, failure: Failure, progress: Progress, returncode: int | None, now: float, levers: Levers = ()
) -> Change:
    return _to(
        FAIL,
        event=ev.Failed(failure=failure.facts),
        notice=nt.JobFailed(
            **_run_end(job, progress, now, levers),
            failure=failure.facts,
            detail=failure.detail,
            tail=tuple(failure.tail),
        ),
        failure=failure.facts,
        **_ended(progress, returncode, now),
    )


def _ended(progress: Progress, returncode: int | None, now: float) -> dict[str, Any]:
    return {
        "progress": progress,
        "exit_code": returncode,
        "finished_at": now,
        "stop_term_at": None,
        "stop_kill_at": None,
    }


def _run_end(job: Job, progress: Progress, now: float, levers: Levers) -> dict[str, Any]:
    """The facts every end of a run tells (the fields of notices.RunEnd)."""
    return {
        "duration_s": now - job.started_at if job.started_at else None,
        "final_loss": progress.train_loss or progress.loss,
        "step": progress.step,
        "max_steps": progress.max_steps,
        "last_checkpoint": progress.last_checkpoint,
        "run_dir": job.run_dir,
        "output_dir": job.output_dir,
        "not_applied": levers,
    }
