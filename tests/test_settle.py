"""How a job ended, decided from facts: exit status, progress, the log's reading, the backend's cause."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runner.failures import Failure, FailureClass
from runner.settle import Failed, Outcome, Stopped, Succeeded, decide_outcome
from storage.models import Job, JobState, Kind, Progress

RUNNING = Job("abcde", Kind.LLM, JobState.RUNNING, "/o", ("0",), ("swift", "sft"))
STOPPING = replace(RUNNING, state=JobState.STOPPING, stopped_by="U1")
DONE = Progress(step=10, max_steps=10)
HALF = Progress(step=5, max_steps=10)
OOM = Failure(FailureClass.CUDA_OOM, "CUDA out of memory", "lower batch_size", "torch.OutOfMemoryError")
UNKNOWN = Failure(FailureClass.UNKNOWN, "exited 1", "", "")
INTERRUPT = Failure(FailureClass.INTERRUPTED, "interrupted (SIGINT)", "", "")


@pytest.mark.parametrize(("job", "returncode", "progress", "failure", "cause", "expected"), [
    (RUNNING, 0, DONE, None, None, Succeeded()),
    (RUNNING, 0, HALF, None, None, Succeeded()),  # exit 0 is success whatever the log got to
    (RUNNING, None, DONE, None, None, Succeeded()),  # a previous bot's job: every step done
    (STOPPING, None, DONE, INTERRUPT, None, Stopped("U1")),  # a stop asked for is a stop, even at the end
    (STOPPING, -2, HALF, INTERRUPT, None, Stopped("U1")),
    (STOPPING, 1, HALF, OOM, "TIMEOUT", Stopped("U1")),  # a stop asked for beats what the log says
    (RUNNING, -2, HALF, INTERRUPT, None, Stopped("someone outside trainbot")),
    (RUNNING, 1, HALF, OOM, None, Failed(OOM)),
    (RUNNING, None, HALF, UNKNOWN, None, Failed(UNKNOWN)),
])
def test_decide_outcome(job: Job, returncode: int | None, progress: Progress, failure: Failure | None,
                        cause: str | None, expected: Outcome) -> None:
    assert decide_outcome(job, returncode, progress, failure, cause) == expected


def test_the_backends_cause_beats_a_vague_log() -> None:
    outcome = decide_outcome(RUNNING, None, HALF, UNKNOWN, "the job ran past its time limit (TIMEOUT)")
    assert isinstance(outcome, Failed) and "TIMEOUT" in outcome.failure.summary
    kept = decide_outcome(RUNNING, 1, HALF, OOM, "NODE_FAIL")
    assert isinstance(kept, Failed) and kept.failure.cls is FailureClass.CUDA_OOM
