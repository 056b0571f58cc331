"""Why a try of a job's model cannot be done as asked: typed refusals with fields (bot/words/tries.py words them)."""

from __future__ import annotations

from typing import Literal

from storage.errors import JobError


class TryRefused(JobError):
    """The base of the try's refusals: a front end catches this one type (and JobError, and NotAllowed)."""


class NothingToTry(TryRefused):
    """The job has no checkpoint (yet, or at all): `state` and `step` say where it is, `export_state` whether an
    export exists."""

    def __init__(self, job_id: str, state: str, step: int | None, export_state: str) -> None:
        super().__init__(f"job {job_id} ({state}) has no checkpoint to try")
        self.job_id, self.state, self.step, self.export_state = job_id, state, step, export_state


class CheckpointNotFound(TryRefused):
    """`checkpoint=N` names no checkpoint of the job; `have` lists the steps there are."""

    def __init__(self, job_id: str, step: int, have: tuple[int, ...]) -> None:
        super().__init__(f"job {job_id} has no checkpoint-{step}")
        self.job_id, self.step, self.have = job_id, step, have


class TryExportRunning(TryRefused):
    """The export is writing the model the try would load; `have` lists the checkpoints one may name instead."""

    def __init__(self, job_id: str, have: tuple[int, ...]) -> None:
        super().__init__(f"job {job_id} is being exported")
        self.job_id, self.have = job_id, have


class TooLong(TryRefused):
    """Over a limit: a question (one message, characters), the conversation (all messages, characters), the
    number of messages, or the tokens asked for."""

    def __init__(
        self, what: Literal["question", "conversation", "messages", "max_tokens"], length: int, limit: int
    ) -> None:
        super().__init__(f"the {what} is {length} long, over the limit of {limit}")
        self.what, self.length, self.limit = what, length, limit


class BadConversation(TryRefused):
    """The messages cannot be answered: none, or the last one is not the user's (`role`)."""

    def __init__(self, reason: Literal["empty", "last_not_user"], role: str | None = None) -> None:
        super().__init__(f"the conversation cannot be answered: {reason}")
        self.reason, self.role = reason, role


class NoCheckQuestions(TryRefused):
    """No question given, and the job's recipe has no check of its own."""

    def __init__(self, job_id: str, kind: str) -> None:
        super().__init__(f"the {kind} recipe has no check questions")
        self.job_id, self.kind = job_id, kind


class TryUnavailable(TryRefused):
    """Tries cannot run here: `no_python` (swift's python cannot be told from `[swift] bin`)."""

    def __init__(self, reason: Literal["no_python"], detail: str = "") -> None:
        super().__init__(f"tries cannot run: {reason} {detail}".strip())
        self.reason, self.detail = reason, detail


TryTrouble = Literal["child_error", "ended", "line_too_long", "not_json", "warm_ended", "cannot_start", "slurm_refused"]


class TryFailed(TryRefused):
    """The session's process failed (the model did not load, or the process ended), or could not be started
    (`cannot_start`: `detail` the program, `strerror` why; `slurm_refused`: sbatch refused the batch job, `detail`
    Slurm's words): `cause` how (runner/try_process.TryProcessError's, and `detail`, `returncode`), `log_path` its
    log. On Slurm, `slurm_state` how Slurm ended its batch job (FAILED, CANCELLED, TIMEOUT, ...) and `tail` the
    last lines of its log."""

    def __init__(
        self,
        job_id: str,
        cause: TryTrouble,
        log_path: str,
        *,
        detail: str = "",
        returncode: int | None = None,
        strerror: str | None = None,
        slurm_state: str | None = None,
        tail: str = "",
    ) -> None:
        super().__init__(f"the try of job {job_id} failed: {cause} {detail}".strip())
        self.job_id, self.cause, self.log_path, self.detail = job_id, cause, log_path, detail
        self.returncode, self.strerror = returncode, strerror
        self.slurm_state, self.tail = slurm_state, tail
