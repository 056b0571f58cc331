"""Typed refusals: facts as attributes, no sentences. Front ends (bot/words/refusals.error_text, the API) word them.

`JobError` is the one base a front end catches; runner/errors.py adds the runner's own."""

from __future__ import annotations


class JobError(Exception):
    """A request that cannot be done as asked. `str()` is a plain fact for logs; users see bot/words/texts words."""


class JobNotFound(JobError, LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id}")
        self.job_id = job_id


class StaleState(JobError, ValueError):
    """The job is not in the state the caller expected: someone else changed it first."""

    def __init__(self, job_id: str, state: str, wanted: tuple[str, ...]) -> None:
        super().__init__(f"job {job_id} is {state}, not {'/'.join(wanted)}")
        self.job_id, self.state, self.wanted = job_id, state, wanted


class StillActive(JobError):
    """Delete refused: the job is starting, running or stopping (its process may run)."""

    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(f"job {job_id} is {state}")
        self.job_id, self.state = job_id, state
