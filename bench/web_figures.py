"""The web dashboard: the jobs page with 10,000 jobs in the store, and the server CPU an open job page costs while
it follows a running job that logs a line a second.

`trainbot serve` runs in its own process (fake swift); pages are fetched over real HTTP on loopback as anonymous
loopback visitors (the default config). The jobs-page time is the client's round trip: the server's time plus
loopback, so an upper bound of the server's.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

from bench.api_figures import _timed, fill_root, serve
from bench.common import Row, fake_config, pct


def _jobs_page(root: Path, n_jobs: int, samples: int) -> Row:
    with serve(root) as (url, _), requests.Session() as session:
        _timed(session, [f"{url}/"] * 10)  # warm-up (templates compiled, cookie set)
        times = _timed(session, [f"{url}/"] * samples)
    return Row(f"Web: the jobs page (first page of 50, rendered) with {n_jobs:,} jobs, real HTTP on loopback",
               f"p50 {pct(times, 50) * 1000:.1f} ms, p99 {pct(times, 99) * 1000:.1f} ms", "", None, "p99 < 50 ms",
               pct(times, 99) < 0.050)


def _follow(url: str, stop: threading.Event) -> None:
    with requests.get(url, stream=True, timeout=60) as reply:
        for _ in reply.iter_content(chunk_size=None):
            if stop.is_set():
                return


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _page_cpu(root: Path, pages: int, window_s: float) -> Row:
    with serve(root) as (url, popen), requests.Session() as session:
        proc = psutil.Process(popen.pid)
        job = session.post(f"{url}/training/llm/jobs", json={"gpu_id": "0", "output_dir": "output/w", "start": True},
                           timeout=10).json()["job_id"]
        time.sleep(3)  # a bench's settling time: the job has started and logs a line a second
        c0 = _cpu_s(proc)
        time.sleep(window_s)
        idle = (_cpu_s(proc) - c0) / window_s
        stop = threading.Event()
        threads = [threading.Thread(target=_follow, args=(f"{url}/web/feed/jobs/{job}", stop), daemon=True)
                   for _ in range(pages)]
        for t in threads:
            t.start()
        time.sleep(2)  # past each page's first paint (the whole log tail and curve)
        c0 = _cpu_s(proc)
        time.sleep(window_s)
        busy = (_cpu_s(proc) - c0) / window_s
        stop.set()
    per_page = max(0.0, busy - idle) / pages
    return Row(f"Web: server CPU per open job page following a job that logs a line a second ({pages} pages, "
               f"{window_s:.0f} s)", f"{per_page * 100:.2f}% of a core (serve alone: {idle * 100:.2f}%)", "", None,
               "< 2% of a core", per_page < 0.02)


async def web_figures(n_jobs: int, samples: int, pages: int, window_s: float) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        await fill_root(root, n_jobs)
        rows = [await asyncio.to_thread(_jobs_page, root, n_jobs, samples)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fake_config(root, gpus=1, step_s=1.0, max_steps=100_000, logging_steps=1)
        rows.append(await asyncio.to_thread(_page_cpu, root, pages, window_s))
    return rows
