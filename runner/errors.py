"""The runner's typed refusals: facts as attributes, worded by bot/words/refusals.error_text (and the API with it); each
one's message is for logs.

All derive from storage.errors.JobError, so a front end catches one type."""

from __future__ import annotations

import enum
from pathlib import Path

from runner.paths import OutsideRoot
from storage.errors import JobError
from storage.failure_facts import FolderTaken, LaunchRefusal, PathOutsideRoot
from storage.models import Purpose


class OutputInUse(JobError):
    """Job `job_id` writes to `output_dir`, the folder asked for or one inside the other: `writer` says whether its
    training or its export does; `wanted` what was refused (a training joining the line, or an export)."""

    def __init__(self, output_dir: Path, job_id: str, *, writer: Purpose = "train", wanted: Purpose = "train") -> None:
        super().__init__(f"job {job_id}{' (its export)' if writer == 'export' else ''} already writes to {output_dir}")
        self.output_dir, self.job_id, self.writer, self.wanted = output_dir, job_id, writer, wanted


class NotAllowed(JobError):
    """The access rules refuse `action`: starting jobs at all (`job_id` None), or a job someone else owns."""

    def __init__(self, action: str, job_id: str | None = None, owner: str | None = None) -> None:
        super().__init__(f"not allowed to {action}" + (f" job {job_id}" if job_id else " jobs"))
        self.action, self.job_id, self.owner = action, job_id, owner


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
    """The backend refused to launch (runner.backends LaunchError); `refusal` says why."""

    def __init__(self, job_id: str, refusal: LaunchRefusal) -> None:
        super().__init__(f"job {job_id}: launch refused: {refusal}")
        self.job_id, self.refusal = job_id, refusal


class NoGpus(enum.StrEnum):
    """Why this machine has no GPUs at all."""

    NONE_REPORTED = "none_reported"  # the NVIDIA driver reports none
    NONE_CONFIGURED = "none_configured"  # the configured inventory lists none
    NO_DRIVER = "no_driver"  # no NVIDIA driver and no GPU inventory configured
    NOT_PROBED = "not_probed"  # not looked at yet


class GpuMissing(JobError):
    """GPUs asked for that this machine does not have. `have`: its GPUs, `models`: how many of each model
    ("2× NVIDIA H100", ...); `suggest`: GPUs it has, as many as asked (empty: none, so only the CPU would do);
    `why`: why there are none, when there are none."""

    def __init__(
        self, missing: tuple[str, ...], have: tuple[str, ...], models: str, why: NoGpus | None, suggest: tuple[str, ...]
    ) -> None:
        super().__init__(f"GPUs {missing} missing; have {have} ({models or why})")
        self.missing, self.have, self.models, self.why, self.suggest = missing, have, models, why, suggest


class GpusPerNodeMissing(GpuMissing):
    """Slurm: no node of the cluster has `wanted` GPUs (the most any has: `most`)."""

    def __init__(self, wanted: int, most: int) -> None:
        JobError.__init__(self, f"{wanted} GPUs a node wanted; Slurm's nodes have at most {most}")
        self.missing, self.have, self.models, self.why = (), tuple(str(i) for i in range(most)), "", None
        self.suggest = self.have
        self.wanted, self.most = wanted, most


def launch_refusal(exc: OutputInUse | OutsideRoot) -> LaunchRefusal:
    """A check made right before a launch, as the launch's refusal (the job fails with it, its facts kept)."""
    if isinstance(exc, OutputInUse):
        return FolderTaken(str(exc.output_dir), exc.job_id, "export" if exc.writer == "export" else "train")
    return PathOutsideRoot(exc.field, str(exc.path), str(exc.resolved), tuple(map(str, exc.roots)), exc.root_key)
