"""The runner's typed refusals: facts as attributes, worded by bot/texts.error_text (and the API with it).

All derive from storage.errors.JobError, so a front end catches one type."""

from __future__ import annotations

from pathlib import Path

from storage.errors import JobError, JobNotFound, StaleState, StillActive

__all__ = [
    "AlreadyExporting",
    "AlreadySucceeded",
    "CannotLaunch",
    "ExportRunning",
    "JobError",
    "JobNotFound",
    "NoCheckpoint",
    "NotEnded",
    "NotRestartable",
    "NothingToStop",
    "OutputInUse",
    "StaleState",
    "StillActive",
    "UserError",
]


class UserError(JobError, ValueError):
    """A refusal whose message is already a plain fact (a missing GPU, today)."""


class OutputInUse(JobError):
    """Another active job writes to the same output folder (or one inside the other)."""

    def __init__(self, output_dir: Path, job_id: str) -> None:
        super().__init__(f"job {job_id} already writes to {output_dir}")
        self.output_dir, self.job_id = output_dir, job_id


class _JobInState(JobError):
    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(f"job {job_id} is {state}")
        self.job_id, self.state = job_id, state


class NotRestartable(_JobInState):
    """Only a stopped or failed job can be started again."""


class NothingToStop(_JobInState):
    """The job was never started or has already ended."""


class NotEnded(_JobInState):
    """Export: the job has not ended (or was never started: state `created`)."""


class AlreadySucceeded(JobError):
    def __init__(self, job_id: str, kind: str) -> None:
        super().__init__(f"job {job_id} already succeeded")
        self.job_id, self.kind = job_id, kind


class AlreadyExporting(JobError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} is being exported")
        self.job_id = job_id


class ExportRunning(AlreadyExporting):
    """Delete refused while the export runs."""


class NoCheckpoint(JobError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} has no checkpoint")
        self.job_id = job_id


class CannotLaunch(JobError):
    """The backend refused to launch (runner.backends LaunchError); `reason` is its plain fact."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(reason)
        self.job_id, self.reason = job_id, reason
