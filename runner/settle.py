"""How a job's process ended, decided from facts alone (`decide_outcome`): the supervisor reads the facts
(exit status, progress, the classified log) and writes what this returns."""

from __future__ import annotations

from dataclasses import dataclass

from runner.failures import Failure, with_cause
from storage.actors import Actor, Outside
from storage.failure_facts import Interrupted, SchedulerEnded
from storage.models import Job, JobState, Progress


@dataclass(frozen=True)
class Succeeded:
    pass


@dataclass(frozen=True)
class Stopped:
    by: Actor | None  # who asked; Outside() for an interrupt nobody here asked for


@dataclass(frozen=True)
class Failed:
    failure: Failure


Outcome = Succeeded | Stopped | Failed


def ended_well(job: Job, returncode: int | None, progress: Progress) -> bool:
    """Exit 0, or (exit status unknown, e.g. a job of a previous bot) every step done and no stop asked."""
    completed = progress.step is not None and progress.step == progress.max_steps
    return returncode == 0 or (returncode is None and completed and job.state is not JobState.STOPPING)


def decide_outcome(
    job: Job, returncode: int | None, progress: Progress, failure: Failure | None, cause: SchedulerEnded | None = None
) -> Outcome:
    """`failure` is the log's reading (None where `ended_well`); `cause` the backend's own reason, if any."""
    if ended_well(job, returncode, progress) or failure is None:
        return Succeeded()
    stopping = job.state is JobState.STOPPING
    if cause is not None and not stopping:
        failure = with_cause(failure, cause)
    if stopping or isinstance(failure.reason, Interrupted):
        return Stopped(job.stopped_by if stopping else Outside())
    return Failed(failure)
