"""What may be done to a job now, and by whom: one answer for Slack's card, the web page, the refusals (every front
end's, the API's too) and the help.

Which states an action applies in follows from the transitions it takes (runner/lifecycle.py); who may take it
is runner/access.py's rule (the job's owner or an admin). An action that does not apply is refused with a typed
error carrying the job and its state (`refusal`), worded by each front end.
"""

from __future__ import annotations

import enum

from runner import lifecycle
from runner.access import Caller, may_manage
from runner.config import AccessConfig
from runner.errors import (
    AlreadyExporting,
    AlreadySucceeded,
    ExportRunning,
    NoCheckpoint,
    NotEnded,
    NothingToStop,
    NotRestartable,
)
from storage.errors import JobError, StillActive
from storage.models import ExportState, Job, JobState


class Action(enum.StrEnum):
    START = "start"  # a job created on hold joins the line; a failed or stopped one runs again
    STOP = "stop"  # a queued job leaves the line; a launched one is stopped
    EXPORT = "export"  # an ended job's last checkpoint merged into a model
    DELETE = "delete"  # a job not under way is forgotten (its files stay)


# the states each action applies in (export: also with a checkpoint, and no export running)
STATES: dict[Action, frozenset[JobState]] = {
    Action.START: lifecycle.QUEUE.sources | lifecycle.RESTART.sources,
    Action.STOP: lifecycle.LEAVE_QUEUE.sources | lifecycle.STOP_REQUESTED.sources,
    Action.EXPORT: lifecycle.ENDED,
    Action.DELETE: frozenset(JobState) - lifecycle.UNDER_WAY,
}


def allowed_actions(job: Job, caller: Caller | None = None, access: AccessConfig | None = None) -> frozenset[Action]:
    """The actions `caller` may take on `job` now. `caller` None: whoever may manage the job (Slack's card, which
    the whole channel sees: each press is checked for the one who pressed)."""
    if caller is not None and access is not None and not may_manage(caller, access, job):
        return frozenset()
    return frozenset(a for a in Action if refusal(job, a) is None)


def refusal(job: Job, action: Action) -> JobError | None:
    """Why `action` does not apply to `job` in its state now, as a typed error (None: it applies)."""
    exporting = job.export_state is ExportState.EXPORTING
    match action:
        case Action.START if job.state not in STATES[action]:
            if job.state is JobState.SUCCEEDED:
                return AlreadySucceeded(job.id, str(job.kind))
            return NotRestartable(job.id, str(job.state))
        case Action.STOP if job.state not in STATES[action]:
            return NothingToStop(job.id, str(job.state))
        case Action.EXPORT if job.state not in STATES[action]:
            return NotEnded(job.id, str(job.state))
        case Action.EXPORT if exporting:
            return AlreadyExporting(job.id)
        case Action.EXPORT if not job.progress.last_checkpoint:
            return NoCheckpoint(job.id)
        case Action.DELETE if exporting:
            return ExportRunning(job.id)
        case Action.DELETE if job.state not in STATES[action]:
            return StillActive(job.id, str(job.state))
    return None


def check(job: Job, action: Action) -> None:
    """Raises the typed refusal unless `action` applies to `job` now."""
    if (refused := refusal(job, action)) is not None:
        raise refused
