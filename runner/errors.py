"""The runner's typed refusals: facts as attributes, worded by bot/texts.error_text (and the API with it).

All derive from storage.errors.JobError, so a front end catches one type."""

from __future__ import annotations

from pathlib import Path

from storage.errors import JobError
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
    """The backend refused to launch (runner.backends LaunchError); `reason` is its plain fact."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(reason)
        self.job_id, self.reason = job_id, reason


class GpuMissing(JobError):
    """GPUs asked for that this machine does not have. `suggest`: GPUs it has, as many as asked (empty: none,
    so only the CPU would do); `why`: why there are none, when there are none."""

    def __init__(self, missing: tuple[str, ...], have: tuple[str, ...], models: str, why: str | None,
                 suggest: tuple[str, ...]) -> None:
        head = f"GPU {missing[0]} does not" if len(missing) == 1 else f"GPUs {_join(missing)} do not"
        what = (f"GPU {have[0]}" if len(have) == 1 else f"GPUs {_join(have)}") + f" ({models})" if have \
            else f"no GPUs ({why})"
        super().__init__(f"{head} exist on this machine; it has {what}")
        self.missing, self.have, self.models, self.why, self.suggest = missing, have, models, why, suggest


class GpusPerNodeMissing(GpuMissing):
    """Slurm: no node of the cluster has `wanted` GPUs (the most any has: `most`)."""

    def __init__(self, wanted: int, most: int) -> None:
        JobError.__init__(self, f"{wanted} GPU{'s' * (wanted != 1)} on one node asked for, but the Slurm cluster's "
                                f"nodes have {f'at most {most} GPU' + 's' * (most != 1) if most else 'no GPUs'} each")
        self.missing, self.have, self.models, self.why = (), tuple(str(i) for i in range(most)), "", None
        self.suggest = self.have
        self.wanted, self.most = wanted, most


def _join(items: tuple[str, ...]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
