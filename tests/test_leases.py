"""Who starts when: GPU leases and the first-come-first-served queue (pure functions over jobs)."""

from __future__ import annotations

from bot.words.waiting import waiting_words
from runner.leases import Decision, export_gpus, held, plan_starts
from storage.models import ExportState, Job, JobState, Kind
from storage.waiting import BehindEarlierJob, GpusBusy


def job(job_id: str, gpus: str, state: JobState = JobState.QUEUED) -> Job:
    return Job(id=job_id, kind=Kind.LLM, state=state, output_dir="/o", gpus=tuple(gpus.split(",")), argv=())


def starts(decisions: list[Decision]) -> list[str]:
    return [d.job.id for d in decisions if d.start]


def test_running_jobs_hold_their_gpus_and_ended_ones_do_not() -> None:
    jobs = [
        job("a", "0", JobState.RUNNING),
        job("b", "1,2", JobState.STOPPING),
        job("c", "3", JobState.SUCCEEDED),
        job("d", "4", JobState.QUEUED),
    ]
    assert held(jobs) == {"0": "a", "1": "b", "2": "b"}


def test_an_export_holds_its_gpu_until_it_ends() -> None:
    exporting = job("e", "5", JobState.SUCCEEDED).replace(export_state=ExportState.EXPORTING, export_gpus=("5",))
    on_cpu = job("f", "6", JobState.STOPPED).replace(export_state=ExportState.EXPORTING)
    exported = exporting.replace(id="g", gpus=("7",), export_gpus=("7",), export_state=ExportState.EXPORTED)
    assert held([exporting, on_cpu, exported]) == {"5": "e"}
    (d,) = plan_starts([job("x", "5")], held([exporting]), set())
    assert not d.start and d.reason == GpusBusy({"5": "e"})
    assert waiting_words(d.reason) == "GPU 5 is held by job e"


def test_an_export_runs_on_its_jobs_gpu_only_where_that_gpu_is_here_and_free() -> None:
    done = job("d", "1,0", JobState.SUCCEEDED)
    here = ["0", "1"]
    assert export_gpus(done, here, {}, set(), []) == ("1",)  # its first GPU
    assert export_gpus(done, here, {"1": "a"}, set(), []) == ()  # another job trains on it: the CPU
    assert export_gpus(done, here, {}, {"1"}, []) == ()  # someone else's process is on it
    assert export_gpus(done, here, {}, set(), [job("q", "2,1")]) == ()  # a waiting job wants it: no jumping the line
    assert export_gpus(done, here, {"0": "a"}, {"0"}, [job("q", "0")]) == ("1",)  # the others' trouble is not its
    assert export_gpus(done, ["0"], {}, set(), []) == ()  # GPU 1 is not on this machine (any more)
    assert export_gpus(job("c", "cpu", JobState.SUCCEEDED), here, {}, set(), []) == ()


def test_free_gpus_start_and_a_taken_gpu_waits_with_its_holder_named() -> None:
    decisions = plan_starts([job("x", "0"), job("y", "1")], {"0": "a"}, foreign=set())
    assert starts(decisions) == ["y"]
    assert decisions[0].reason == GpusBusy({"0": "a"}) and decisions[0].position == 1


def test_two_queued_jobs_never_get_the_same_gpu() -> None:
    assert starts(plan_starts([job("x", "0"), job("y", "0")], {}, set())) == ["x"]


def test_foreign_processes_make_a_gpu_busy() -> None:
    (d,) = plan_starts([job("x", "2")], {}, foreign={"2"})
    assert not d.start and d.reason == GpusBusy({}, ("2",))
    assert waiting_words(d.reason) == "GPU 2 is busy with a process trainbot did not start"


def test_first_come_first_served_a_big_job_is_not_starved_by_later_small_ones() -> None:
    queue = [job("big", "0,1"), job("small", "1"), job("other", "2")]
    decisions = plan_starts(queue, {"0": "a"}, set())
    assert starts(decisions) == ["other"]  # GPU 1 is free, but `big` came first and wants it
    small = decisions[1]
    assert small.reason == BehindEarlierJob() and small.position == 2
    assert waiting_words(small.reason) == "an earlier job is waiting for the same GPU"
