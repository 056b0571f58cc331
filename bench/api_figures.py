"""The HTTP API over real HTTP on loopback: `status` and `list` with 10,000 jobs, and create -> started.

`trainbot serve` runs in its own process (API alone, fake swift); the client is `requests` with one kept-alive
connection, as a script would use it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from bench.common import Row, fake_config, pct
from bench.runner_figures import _fill
from storage.jobs import JobStore

URL_LINE = re.compile(r"HTTP API on (http://\S+) ")


@contextmanager
def serve(root: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`trainbot serve` in its own process: its URL, and the process (the web figures measure its CPU time)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TRAINBOT_"))}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "trainbot"),
            "--config",
            str(root / "trainbot.toml"),
            "serve",
            "--port",
            "0",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # blocks until the server says where it listens (or exits)
            if found := URL_LINE.search(line):
                yield found.group(1), proc
                break
        else:
            raise RuntimeError(f"trainbot serve exited with {proc.wait()}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _timed(session: requests.Session, urls: list[str]) -> list[float]:
    times = []
    for url in urls:
        t0 = time.perf_counter()
        reply = session.get(url, timeout=10)
        times.append(time.perf_counter() - t0)
        reply.raise_for_status()
    return times


def _latency_rows(root: Path, n_jobs: int, samples: int) -> list[Row]:
    rows = []
    with serve(root) as (url, _), requests.Session() as session:
        some = [j["job_id"] for j in session.get(f"{url}/training/all/jobs?limit={samples}", timeout=10).json()["jobs"]]
        _timed(session, [f"{url}/healthz"] * 20)  # warm-up
        for label, urls in (
            ("GET /training/jobs/{id}/status", [f"{url}/training/jobs/{i}/status" for i in some]),
            ("GET /training/all/jobs (a page of 50)", [f"{url}/training/all/jobs?limit=50"] * samples),
            (
                "GET /training/llm/jobs?status=succeeded (50)",
                [f"{url}/training/llm/jobs?status=succeeded&limit=50"] * samples,
            ),
        ):
            times = _timed(session, urls)
            rows.append(
                Row(
                    f"API: `{label}` with {n_jobs:,} jobs, real HTTP on loopback",
                    f"p50 {pct(times, 50) * 1000:.2f} ms, p99 {pct(times, 99) * 1000:.2f} ms",
                    "",
                    None,
                    "p99 < 10 ms",
                    pct(times, 99) < 0.010,
                )
            )
    return rows


ENDED = ("succeeded", "failed", "stopped")


def _create_to_started(root: Path, jobs: int) -> list[float]:
    """POST with start=true, then the `started` event's arrival on the all-jobs SSE stream opened before."""
    times: list[float] = []
    ids: list[str] = []
    with (
        serve(root) as (url, _),
        requests.Session() as session,
        requests.get(f"{url}/training/events?follow=true", stream=True, timeout=60) as stream,
    ):
        lines = (str(line) for line in stream.iter_lines(decode_unicode=True))
        for i in range(jobs):
            t0 = time.perf_counter()
            job = session.post(
                f"{url}/training/llm/jobs",
                json={"gpu_id": "0", "output_dir": f"output/c{i}", "start": True},
                timeout=10,
            ).json()
            for line in lines:
                event = json.loads(line[6:]) if line.startswith("data: ") else {}
                if event.get("job_id") == job["job_id"] and event.get("kind") in ("started", "failed"):
                    times.append(time.perf_counter() - t0)
                    break
            ids.append(job["job_id"])
        _until_ended(session, url, ids)  # their processes must not outlive the server (and write into `root`)
    return times


def _until_ended(session: requests.Session, url: str, ids: list[str], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    for job_id in ids:
        while session.get(f"{url}/training/jobs/{job_id}/status", timeout=10).json()["status"] not in ENDED:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still running after {timeout_s:.0f} s")
            time.sleep(0.05)


async def fill_root(root: Path, n_jobs: int) -> None:
    """A fake-swift config in `root` whose store already holds `n_jobs` ended jobs (the list and page figures)."""
    config = fake_config(root, gpus=1, step_s=0.01, max_steps=2)
    store = await JobStore.open(config.db_path)
    await _fill(store, n_jobs)
    await store.close()


async def api_latency(n_jobs: int, samples: int, creates: int) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        await fill_root(root, n_jobs)
        rows = await asyncio.to_thread(_latency_rows, root, n_jobs, samples)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fake_config(root, gpus=creates, step_s=0.01, max_steps=2)  # a free GPU for each: no job waits
        times = await asyncio.to_thread(_create_to_started, root, creates)
    rows.append(
        Row(
            f"API: create -> started ({creates} jobs, POST start=true to the `started` event over SSE)",
            f"p50 {pct(times, 50) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms",
            "",
            None,
            "",
            None,
        )
    )
    return rows
