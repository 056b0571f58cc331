"""How a job's process ended, decided from facts alone (`decide_outcome`): the supervisor reads the facts
(exit status, progress, the classified log) and writes what this returns."""

from __future__ import annotations

from dataclasses import dataclass

from runner.failures import Failure, FailureClass, with_cause
from storage.models import Job, JobState, Progress


@dataclass(frozen=True)
class Succeeded:
    pass


@dataclass(frozen=True)
class Stopped:
    by: str | None  # who asked; "someone outside trainbot" for an interrupt nobody here asked for


@dataclass(frozen=True)
class Failed:
    failure: Failure


Outcome = Succeeded | Stopped | Failed


def ended_well(job: Job, returncode: int | None, progress: Progress) -> bool:
    """Exit 0, or (exit status unknown, e.g. a job of a previous bot) every step done and no stop asked."""
    completed = progress.step is not None and progress.step == progress.max_steps
    return returncode == 0 or (returncode is None and completed and job.state is not JobState.STOPPING)


def decide_outcome(job: Job, returncode: int | None, progress: Progress, failure: Failure | None,
                   cause: str | None = None) -> Outcome:
    """`failure` is the log's reading (None where `ended_well`); `cause` the backend's own reason, if any."""
    if ended_well(job, returncode, progress) or failure is None:
        return Succeeded()
    stopping = job.state is JobState.STOPPING
    if cause is not None and not stopping:
        failure = with_cause(failure, cause)
    if stopping or failure.cls is FailureClass.INTERRUPTED:
        return Stopped(job.stopped_by if stopping else "someone outside trainbot")
    return Failed(failure)
