"""A try session is a GPU lease like a training's: held GPUs, the one line of waiters, and the store that finds it
(real SQLite). The sessions themselves, with the real swift: tests/test_try.py."""

from __future__ import annotations

from runner import admission
from runner.leases import held, plan_starts
from storage.jobs import JobStore
from storage.models import Job, JobState, Kind, Run, TryState
from storage.waiting import GpusBusy


def job(job_id: str, gpus: str, state: JobState = JobState.QUEUED) -> Job:
    return Job(id=job_id, kind=Kind.LLM, state=state, output_dir=f"/o/{job_id}", gpus=tuple(gpus.split(",")), argv=())


def test_a_loaded_try_holds_its_gpu_and_one_on_the_cpu_holds_nothing() -> None:
    trying = job("t", "0", JobState.SUCCEEDED).replace(try_state=TryState.READY, try_gpus=("3",))
    loading = job("u", "1", JobState.FAILED).replace(try_state=TryState.LOADING, try_gpus=("1",))
    waiting = job("w", "2", JobState.STOPPED).replace(try_state=TryState.WAITING, try_gpus=("2",))
    on_cpu = job("c", "4", JobState.SUCCEEDED).replace(try_state=TryState.READY, try_gpus=("cpu",))
    assert held([trying, loading, waiting, on_cpu]) == {"3": "t", "1": "u"}
    (d,) = plan_starts([job("x", "3")], held([trying]), set())
    assert not d.start and d.reason == GpusBusy({"3": "t"})


def test_a_waiting_try_keeps_its_place_in_the_line() -> None:
    tried = job("t", "0", JobState.SUCCEEDED).replace(try_state=TryState.WAITING, try_gpus=("0",))
    line = [(job("a", "0"), "train"), (tried, "try"), (job("b", "0"), "train"), (job("c", "1"), "train")]
    a, t, b, c = plan_starts(line, {}, set())
    assert (a.start, t.start, b.start, c.start) == (True, False, False, True)
    assert (t.purpose, t.position, b.position) == ("try", 1, 2)
    # the training ahead has ended: the try is next, and the job behind it still waits
    t, b, c = plan_starts(line[1:], {}, set())
    assert t.start and t.purpose == "try" and not b.start and b.position == 1


def test_the_admission_line_is_the_same_line_and_a_try_moves_up_on_its_own() -> None:
    """admission.line (what the supervisor and the follower start from) takes the try entries too; a job and a
    try of the same job are two places in line, each moving up on its own."""
    tried = job("t", "0", JobState.QUEUED).replace(try_state=TryState.WAITING, try_gpus=("0",))
    busy = job("a", "0", JobState.RUNNING)
    before = admission.line([(tried, "try"), (tried, "train")], [busy], set())
    assert [(d.purpose, d.start, d.position) for d in before] == [("try", False, 1), ("train", False, 2)]
    after = admission.line([(tried, "try"), (tried, "train")], [], set())
    assert [(d.purpose, d.start) for d in after] == [("try", True), ("train", False)]
    moved = admission.moved_up(before, after)
    assert [(d.purpose, d.position) for d in moved] == [("train", 1)]


async def test_the_store_finds_tries_in_holding_and_in_line(store: JobStore) -> None:
    first = await store.create(job("", "0"))
    tried = await store.create(job("", "0", JobState.SUCCEEDED).replace(output_dir="/o/t"))
    seq = await store.next_try_seq()
    await store.update(
        tried.id, try_state=TryState.WAITING, try_gpus=("0",), try_seq=seq, try_run=Run(log_path="/l/try.log")
    )
    later = await store.create(job("", "0").replace(output_dir="/o/l"))
    line = await store.line()
    assert [(j.id, p) for j, p in line] == [(first.id, "train"), (tried.id, "try"), (later.id, "train")]
    assert line[1][0].try_gpus == ("0",) and line[1][0].try_run.log_path == "/l/try.log"
    # loaded: it holds GPU 0, found by pid and start time after a restart; listed once though it is also active
    await store.update(
        tried.id, state=JobState.QUEUED, try_state=TryState.READY, try_run=Run(4242, 1700000000.5, None, "/l/try.log")
    )
    holding = await store.holding()
    assert sorted(j.id for j in holding) == sorted({first.id, tried.id, later.id})
    assert held(holding) == {"0": tried.id}
    found = await store.require(tried.id)
    assert found.try_run == Run(4242, 1700000000.5, None, "/l/try.log") and found.try_state is TryState.READY
