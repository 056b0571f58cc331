"""How a job ended, decided from facts: exit status, progress, the log's reading, the backend's cause."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.words import failures as failure_words
from runner.failures import Failure, FailureClass
from runner.settle import Failed, Outcome, Stopped, Succeeded, decide_outcome
from storage.actors import Outside, User
from storage.failure_facts import CudaOom, Interrupted, SchedulerEnded, SlurmEnd, Unknown
from storage.models import Job, JobState, Kind, Progress

RUNNING = Job("abcde", Kind.LLM, JobState.RUNNING, "/o", ("0",), ("swift", "sft"))
STOPPING = replace(RUNNING, state=JobState.STOPPING, stopped_by=User("U1"))
DONE = Progress(step=10, max_steps=10)
HALF = Progress(step=5, max_steps=10)
OOM = Failure(CudaOom(), "torch.OutOfMemoryError")
UNKNOWN = Failure(Unknown(returncode=1), "")
INTERRUPT = Failure(Interrupted(requested=False, how="SIGINT"), "")
TIMEOUT = SchedulerEnded(SlurmEnd.TIME_LIMIT, "TIMEOUT", "gpu01", "01:00:00")
NODE_FAIL = SchedulerEnded(SlurmEnd.NODE_FAIL, "NODE_FAIL", "gpu01")


@pytest.mark.parametrize(
    ("job", "returncode", "progress", "failure", "cause", "expected"),
    [
        (RUNNING, 0, DONE, None, None, Succeeded()),
        (RUNNING, 0, HALF, None, None, Succeeded()),  # exit 0 is success whatever the log got to
        (RUNNING, None, DONE, None, None, Succeeded()),  # a previous bot's job: every step done
        (STOPPING, None, DONE, INTERRUPT, None, Stopped(User("U1"))),  # a stop asked for is a stop, even at the end
        (STOPPING, -2, HALF, INTERRUPT, None, Stopped(User("U1"))),
        (STOPPING, 1, HALF, OOM, TIMEOUT, Stopped(User("U1"))),  # a stop asked for beats what the log says
        (RUNNING, -2, HALF, INTERRUPT, None, Stopped(Outside())),
        (RUNNING, 1, HALF, OOM, None, Failed(OOM)),
        (RUNNING, None, HALF, UNKNOWN, None, Failed(UNKNOWN)),
    ],
)
def test_decide_outcome(
    job: Job,
    returncode: int | None,
    progress: Progress,
    failure: Failure | None,
    cause: SchedulerEnded | None,
    expected: Outcome,
) -> None:
    assert decide_outcome(job, returncode, progress, failure, cause) == expected


def test_the_backends_cause_beats_a_vague_log() -> None:
    outcome = decide_outcome(RUNNING, None, HALF, UNKNOWN, TIMEOUT)
    assert isinstance(outcome, Failed) and outcome.failure.reason == TIMEOUT
    assert failure_words.summary(outcome.failure.facts) == "Slurm killed the job at its time limit (01:00:00)"
    kept = decide_outcome(RUNNING, 1, HALF, OOM, NODE_FAIL)
    assert isinstance(kept, Failed) and kept.failure.cls is FailureClass.CUDA_OOM and kept.failure.cause == NODE_FAIL
    # the scheduler's end leads, the specific reason's advice follows
    assert failure_words.summary(kept.failure.facts) == "the node failed under the job (gpu01, NODE_FAIL)"
    assert failure_words.hint(kept.failure.facts) == "lower max_length or the batch size, or use a GPU with more memory"
