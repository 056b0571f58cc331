"""Figures about trying a job's model: from `try` to the first token and to the whole answer, on the tiny model on
the CPU, started afresh (a new python imports swift's inference, then loads the model), started warm (handed to
a process that imported it before the try came: `[runner] warm_start`), and with the model loaded already (a
follow-up question)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import Row, median, tiny_config
from runner.access import Caller
from runner.runtime import Runtime
from runner.supervisor import JobRequest
from runner.try_types import Message, TryAsk, TryDone
from storage.models import JobState, Kind

QUESTION = (Message("user", "Who are you?"),)
TOKENS = 32


async def try_latency(rounds: int) -> list[Row]:
    """One tiny job trained, then `rounds` tries of each start, in turn (afresh, warm, loaded), each timed from the
    ask to its first token and to its whole answer (TryDone's own figures)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = tiny_config(root)
        warm = await Runtime.open(config)
        cold = await Runtime.open(config.changed(runner={"warm_start": False}))  # the same store
        for runtime in (warm, cold):
            await runtime.start()
        timings: dict[str, list[TryDone]] = {"afresh": [], "warm": [], "loaded": []}
        try:
            job = await warm.supervisor.submit(JobRequest(Kind.LLM, ("cpu",), root / "output/tried", {}))
            while True:
                seen = warm.store.changes.seq
                if (job := await warm.store.require(job.id)).state.is_terminal:
                    break
                await warm.store.changes.wait(seen, 1.0)
            assert job.state is JobState.SUCCEEDED, job.failure
            await _ask(cold, job.id)  # the page cache warmed for both (not timed)
            await cold.tries.end(job.id)
            for _ in range(rounds):
                timings["afresh"].append(await _ask(cold, job.id))
                await cold.tries.end(job.id)
                warm.tries.keep_warm()
                assert await warm.tries.warm_ready(), "the warm try process did not get ready"
                timings["warm"].append(await _ask(warm, job.id))
                timings["loaded"].append(await _ask(warm, job.id))
                await warm.tries.end(job.id)
        finally:
            for runtime in (cold, warm):
                await runtime.close()
    assert all(d.warm is False for d in timings["afresh"]) and all(d.warm for d in timings["warm"])
    assert all(d.load_s is None for d in timings["loaded"])
    first = {k: median([d.first_token_s or d.total_s for d in v]) for k, v in timings.items()}
    whole = {k: median([d.total_s for d in v]) for k, v in timings.items()}
    return [
        Row(
            f"try -> first token, tiny model on the CPU, {rounds} round(s) (median): started warm",
            f"{first['warm']:.2f} s (whole answer of {TOKENS} tokens {whole['warm']:.2f} s)",
            f"afresh {first['afresh']:.2f} s (whole {whole['afresh']:.2f} s)",
            first["warm"] / first["afresh"],
            "ratio < 0.5",
            first["warm"] / first["afresh"] < 0.5,
        ),
        Row(
            "try -> first token with the model loaded already (a follow-up question, median)",
            f"{first['loaded']:.3f} s (whole answer {whole['loaded']:.2f} s)",
            f"warm start {first['warm']:.2f} s",
            first["loaded"] / first["warm"],
            "ratio < 1",
            first["loaded"] < first["warm"],
        ),
    ]


async def _ask(runtime: Runtime, job_id: str) -> TryDone:
    stream = await runtime.tries.open(
        TryAsk(job_id, QUESTION, max_tokens=TOKENS, temperature=0.0), Caller(console=True)
    )
    done = None
    async for event in stream:
        if isinstance(event, TryDone):
            done = event
    assert done is not None and done.answers[0].text
    return done
