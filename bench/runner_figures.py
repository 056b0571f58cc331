"""Figures about running jobs: overhead on a real job, the cost of watching 8 jobs, queue efficiency, the store."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import Row, fake_config, median, pct, tiny_config
from bot.chat.handlers import Handlers
from runner.access import Caller
from runner.backends.local import device_env
from runner.child_env import child_env
from runner.config import Config
from runner.runtime import Runtime
from runner.supervisor import JobRequest
from runner.swift_entry import READY
from storage.jobs import JobStore
from storage.models import Job, JobState, Kind


async def _until(runtime: Runtime, job_id: str, done: set[JobState], every: float = 0.02) -> Job:
    while True:
        job = await runtime.store.require(job_id)
        if job.state in done:
            return job
        await asyncio.sleep(every)


def _request(config: Config, out: str, gpus: tuple[str, ...]) -> JobRequest:
    return JobRequest(Kind.LLM, gpus, config.base_dir / out, {}, user_id="UBENCH", channel_id="CBENCH")


async def job_overhead(pairs: int) -> list[Row]:
    """The same tiny real swift job started by trainbot without its warm start and by hand (same argv and env), by
    hand through the `swift sft` wrapper with the same flags (what trainbot's direct start of swift's sft script
    saves), and by trainbot as it runs by default (handed to a process that imported swift before the job: what
    `[runner] warm_start` saves), in turn; each timed while nothing else runs (a warm process waits, imported)."""
    by_bot: list[float] = []
    by_hand: list[float] = []
    by_wrapper: list[float] = []
    by_warm: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = tiny_config(root)
        cold = await Runtime.open(config.changed(runner={"warm_start": False}), db_path=root / "cold.db")
        warm = await Runtime.open(config)
        for runtime in (cold, warm):
            await runtime.start()
        try:
            for runtime in (cold, warm):  # the page cache, and the warm runtime's first warm process
                warm_up = await runtime.supervisor.submit(_request(config, f"output/warm-up-{id(runtime)}", ("cpu",)))
                await _until(runtime, warm_up.id, {JobState.SUCCEEDED, JobState.FAILED})
            for i in range(pairs):
                await _warm_ready(warm)
                job = await _timed_job(cold, config, f"output/bot{i}", by_bot)
                assert job.argv[1].endswith("runner/swift_entry.py"), job.argv  # the direct start
                env = child_env(config, job.env | device_env(("cpu",)))
                for name, start, times in (
                    ("hand", list(job.argv[:3]), by_hand),
                    ("wrapper", [config.swift_bin, "sft"], by_wrapper),
                ):
                    out = str(root / "output" / f"{name}{i}")
                    argv = start + [a if a != job.output_dir else out for a in job.argv[3:]]
                    t0 = time.monotonic()
                    with (root / f"{name}{i}.log").open("wb") as log:
                        rc = await asyncio.to_thread(
                            subprocess.run, argv, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
                        )
                    times.append(time.monotonic() - t0)
                    assert rc.returncode == 0, (root / f"{name}{i}.log").read_text()[-2000:]
                job = await _timed_job(warm, config, f"output/warm{i}", by_warm)
                assert "[trainbot] started warm" in Path(job.train_run.log_path or "").read_text()
        finally:
            for runtime in (cold, warm):
                await runtime.close()
    ratio = median(by_bot) / median(by_hand)
    direct = median(by_hand) / median(by_wrapper)
    warmed = median(by_warm) / median(by_hand)
    return [
        Row(
            f"job wall time, {pairs} pair(s), tiny real swift (median), warm start off",
            f"{median(by_bot):.2f} s via trainbot",
            f"{median(by_hand):.2f} s by hand",
            ratio,
            "ratio <= 1.02",
            ratio <= 1.02,
        ),
        Row(
            "the same job, swift's sft script started directly vs `swift sft` (by hand, median)",
            f"{median(by_hand):.2f} s",
            f"{median(by_wrapper):.2f} s",
            direct,
            "ratio < 1",
            direct < 1,
        ),
        Row(
            "the same job via trainbot as by default: started warm, swift imported before it came (median)",
            f"{median(by_warm):.2f} s",
            f"{median(by_hand):.2f} s by hand",
            warmed,
            "ratio < 1",
            warmed < 1,
        ),
    ]


async def _timed_job(runtime: Runtime, config: Config, out: str, times: list[float]) -> Job:
    t0 = time.monotonic()
    job = await runtime.supervisor.submit(_request(config, out, ("cpu",)))
    job = await _until(runtime, job.id, {JobState.SUCCEEDED, JobState.FAILED})
    times.append(time.monotonic() - t0)
    assert job.state is JobState.SUCCEEDED, job.failure
    return job


async def _warm_ready(runtime: Runtime, within_s: float = 120.0) -> None:
    """The runtime's warm process has imported swift (its import would otherwise share the CPU with a timed job)."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        slot = runtime.local.warm if runtime.local is not None else None
        if slot is not None and READY in slot.preamble.read_text(errors="replace"):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the warm process did not get ready")


async def watching_cost(window_s: float) -> list[Row]:
    """8 jobs logging at a realistic and at a 100x rate: the bot's own CPU time and memory while it watches."""
    rows = []
    me = psutil.Process()
    rates = (("realistic (1 step/s, a log line every 5 s)", 1.0), ("100x (a log line every 0.05 s)", 0.01))
    for label, step_s in rates:
        with tempfile.TemporaryDirectory() as tmp:
            steps = int(window_s / step_s) + 200
            config = fake_config(Path(tmp), gpus=8, step_s=step_s, max_steps=steps)
            runtime = await Runtime.open(config)
            await runtime.start()
            try:
                idle = await _cpu_over(me, 5.0 if window_s > 10 else 2.0)
                ids = [
                    (await runtime.supervisor.submit(_request(config, f"output/w{i}", (str(i),)))).id for i in range(8)
                ]
                # the window opens once all 8 run and have logged: launching them (a request wakes the loop,
                # which starts the jobs) is the job overhead's figure, not watching's
                await asyncio.wait_for(_all_logging(runtime, ids), 60)
                cpu = await _cpu_over(me, window_s)
                running = [j for j in await runtime.store.active() if j.state is JobState.RUNNING]
                assert len(running) == 8, [j.state for j in running]
                steps_seen = [(await runtime.store.require(i)).progress.step or 0 for i in ids]
                assert min(steps_seen) > 0, steps_seen
                rss = me.memory_info().rss / 2**20
                for job_id in ids:  # a stop wakes the loop, which signals the job: wait for it to end
                    await runtime.supervisor.stop(job_id, by="bench")
                for job_id in ids:
                    await asyncio.wait_for(_until(runtime, job_id, {JobState.STOPPED, JobState.FAILED}), 60)
            finally:
                await runtime.close()
        per_min = cpu * 60
        rows.append(
            Row(
                f"watching 8 jobs, {label}: bot CPU",
                f"{100 * cpu:.2f}% of a core ({per_min:.2f} s/min), RSS {rss:.0f} MiB",
                f"idle bot {100 * idle:.2f}%",
                None,
                "< 1% of a core at the realistic rate",
                cpu < 0.01 if step_s == 1.0 else None,
            )
        )
    return rows


async def _all_logging(runtime: Runtime, ids: list[str]) -> None:
    """Until every job runs and its first progress line is in the store."""
    while True:
        jobs = [await runtime.store.require(i) for i in ids]
        if all(j.state is JobState.RUNNING and j.progress.step for j in jobs):
            return
        await asyncio.sleep(0.2)


async def _cpu_over(proc: psutil.Process, seconds: float) -> float:
    """This process's own CPU time (not its children's) per second of wall time."""
    t0, c0 = time.monotonic(), sum(proc.cpu_times()[:2])
    await asyncio.sleep(seconds)
    return (sum(proc.cpu_times()[:2]) - c0) / (time.monotonic() - t0)


async def queue_efficiency(job_s: float) -> list[Row]:
    """6 jobs of known length on 2 GPUs: actual starts against the ideal first-come-first-served schedule."""
    with tempfile.TemporaryDirectory() as tmp:
        step_s = 0.1
        config = fake_config(Path(tmp), gpus=2, step_s=step_s, max_steps=int(job_s / step_s))
        runtime = await Runtime.open(config)
        await runtime.start()
        try:
            gpus = [("0",), ("1",), ("0",), ("1",), ("0",), ("1",)]
            ids = [
                (await runtime.supervisor.submit(_request(config, f"output/q{i}", g))).id for i, g in enumerate(gpus)
            ]
            jobs = [await _until(runtime, i, {JobState.SUCCEEDED, JobState.FAILED}) for i in ids]
        finally:
            await runtime.close()
    free = {"0": 0.0, "1": 0.0}
    first = min(j.started_at or 0 for j in jobs)
    late = []
    for job in jobs:  # the ideal start: the moment its GPU frees, given the real durations before it
        gpu = job.gpus[0]
        started, finished = (job.started_at or 0) - first, (job.finished_at or 0) - first
        ideal = free[gpu]
        late.append(started - ideal)
        free[gpu] = ideal + (finished - started)
    actual = max((j.finished_at or 0) for j in jobs) - first
    ideal_makespan = max(free.values())
    ratio = actual / ideal_makespan
    poll = config.progress_poll_seconds
    idle = sum(late)  # each job's late start is time its GPU sat idle while it waited
    return [
        Row(
            f"queue: 6 x {job_s:.0f} s jobs on 2 GPUs, makespan",
            f"{actual:.2f} s (GPU idle while jobs wait: {idle:.2f} s)",
            f"ideal {ideal_makespan:.2f} s",
            ratio,
            "ratio <= 1.02",
            ratio <= 1.02,
        ),
        Row(
            "queue: latest start vs ideal",
            f"{max(late) * 1000:.0f} ms",
            f"poll interval {poll * 1000:.0f} ms",
            None,
            "<= the polling interval",
            max(late) <= poll,
        ),
    ]


async def store_latency(n_jobs: int, samples: int) -> list[Row]:
    """list / status answers with n_jobs in the database, through the same handlers Slack and the console use."""
    with tempfile.TemporaryDirectory() as tmp:
        config = fake_config(Path(tmp), gpus=2, step_s=0.1, max_steps=10)
        store = await JobStore.open(config.db_path)
        await _fill(store, n_jobs)
        await store.close()
        runtime = await Runtime.open(config)
        handlers = Handlers(runtime)
        caller = Caller(user_id="UBENCH", channel_id="CBENCH")
        some = [j.id for j in await runtime.store.list_jobs(limit=samples)]
        rows = []
        try:
            for label, texts in (
                ("list", ["list"] * samples),
                ("status <id>", [f"status {i}" for i in some]),
                ("list llm state=succeeded", ["list llm state=succeeded"] * samples),
            ):
                times = []
                for text in texts:
                    t0 = time.perf_counter()
                    reply = await handlers.handle(text, caller)
                    times.append(time.perf_counter() - t0)
                    assert reply.ok, reply.text
                rows.append(
                    Row(
                        f"store: `{label}` with {n_jobs:,} jobs",
                        f"p50 {pct(times, 50) * 1000:.2f} ms, p99 {pct(times, 99) * 1000:.2f} ms",
                        "",
                        None,
                        "p99 < 10 ms",
                        pct(times, 99) < 0.010,
                    )
                )
        finally:
            await runtime.close()
    return rows


async def _fill(store: JobStore, n: int) -> None:
    """n ended jobs, shaped like real ones, written through the store's own create (one transaction each)."""
    template = Job(
        id="",
        kind=Kind.LLM,
        state=JobState.SUCCEEDED,
        output_dir="/o/x",
        gpus=("0",),
        argv=("swift", "sft", "--model", "Qwen/Qwen2.5-7B-Instruct"),
        user_id="U1",
        slack_channel="C1",
    )
    for i in range(n):
        await store.create(
            template.replace(
                kind=Kind.VLM if i % 3 == 0 else Kind.LLM,  # every kind in every state
                state=(JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED)[i // 3 % 3],
            )
        )
