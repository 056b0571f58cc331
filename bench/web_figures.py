"""The web dashboard: the jobs page with 10,000 jobs in the store, the compare page with 100,000, the server CPU an
open job page costs while it follows a running job that logs a line a second, and the bytes an open tab receives
while 8 jobs run.

`trainbot serve` runs in its own process (fake swift); pages are fetched over real HTTP on loopback as anonymous
loopback visitors (the default config). The jobs-page time is the client's round trip: the server's time plus
loopback, so an upper bound of the server's.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import requests
import urllib3

from bench.api_figures import _timed, fill_root, serve
from bench.common import Row, fake_config, pct
from storage.jobs import JobStore
from storage.models import Job, JobState, Kind
from storage.rows import to_row


def _jobs_page(root: Path, n_jobs: int, samples: int) -> Row:
    with serve(root) as (url, _), requests.Session() as session:
        _timed(session, [f"{url}/"] * 10)  # warm-up (templates compiled, cookie set)
        times = _timed(session, [f"{url}/"] * samples)
    return Row(
        f"Web: the jobs page (first page of 50, rendered) with {n_jobs:,} jobs, real HTTP on loopback",
        f"p50 {pct(times, 50) * 1000:.1f} ms, p99 {pct(times, 99) * 1000:.1f} ms",
        "",
        None,
        "p99 < 50 ms",
        pct(times, 99) < 0.050,
    )


def _view(url: str, path: str) -> dict[str, Any]:
    """What the page at `path` watches live (its `data-live`), as its script reads it."""
    found = re.search(r"data-live='([^']*)'", requests.get(f"{url}{path}", timeout=10).text)
    if found is None:
        raise RuntimeError(f"{path} has no live part")
    return dict(json.loads(html.unescape(found.group(1))))


def _live(url: str, path: str, compressed: bool = True) -> requests.Response:
    """The stream one open tab of `path` adds to (its view alone: one tab of a browser's shared stream)."""
    return requests.post(
        f"{url}/web/live",
        json={"views": {"tab": _view(url, path)}},
        stream=True,
        timeout=60,
        headers={"Accept-Encoding": "gzip" if compressed else "identity"},
    )


def _follow(open_stream: Callable[[], requests.Response], stop: threading.Event) -> None:
    with open_stream() as reply:
        for _ in reply.iter_content(chunk_size=None):
            if stop.is_set():
                return


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _page_cpu(root: Path, pages: int, window_s: float) -> Row:
    with serve(root) as (url, popen), requests.Session() as session:
        proc = psutil.Process(popen.pid)
        job = session.post(
            f"{url}/training/llm/jobs", json={"gpu_id": "0", "output_dir": "output/w", "start": True}, timeout=10
        ).json()["job_id"]
        time.sleep(3)  # a bench's settling time: the job has started and logs a line a second
        c0 = _cpu_s(proc)
        time.sleep(window_s)
        idle = (_cpu_s(proc) - c0) / window_s
        stop = threading.Event()
        threads = [
            threading.Thread(target=_follow, args=(lambda: _live(url, f"/jobs/{job}"), stop), daemon=True)
            for _ in range(pages)
        ]
        for t in threads:
            t.start()
        time.sleep(2)  # past each page's first paint (the whole log tail and curve)
        c0 = _cpu_s(proc)
        time.sleep(window_s)
        busy = (_cpu_s(proc) - c0) / window_s
        stop.set()
    per_page = max(0.0, busy - idle) / pages
    return Row(
        f"Web: server CPU per open job page following a job that logs a line a second ({pages} pages, "
        f"{window_s:.0f} s)",
        f"{per_page * 100:.2f}% of a core (serve alone: {idle * 100:.2f}%)",
        "",
        None,
        "< 2% of a core",
        per_page < 0.02,
    )


def _bulk_fill(db_path: Path, n: int) -> None:
    """`n` ended jobs written straight into the store's table in one transaction (100,000 creates, one
    transaction each, would take minutes; the rows are the store's own: storage/rows.to_row)."""
    template = Job(
        id="",
        kind=Kind.LLM,
        state=JobState.SUCCEEDED,
        output_dir="/o/x",
        gpus=("0",),
        argv=("swift", "sft", "--model", "Qwen/Qwen2.5-7B-Instruct"),
        user_id="U1",
    )
    now = time.time()
    rows = []
    for i in range(n):
        job = template.replace(
            id=f"b{i:07d}",
            kind=Kind.VLM if i % 3 == 0 else Kind.LLM,
            state=(JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED)[i // 3 % 3],
            created_at=now - n + i,
            updated_at=now - n + i,
        )
        rows.append(to_row(job) | {"queue_seq": i + 1})
    with sqlite3.connect(db_path) as db:
        cols = ", ".join(rows[0])
        db.executemany(
            f"INSERT INTO jobs ({cols}) VALUES ({', '.join('?' * len(rows[0]))})", [list(r.values()) for r in rows]
        )


async def _compared_root(root: Path, n_jobs: int, steps: int) -> list[str]:
    """A store of `n_jobs` jobs, 3 of them ended runs with a logging.jsonl of `steps` logged steps (an eval every
    50) that differ in their learning rate: the jobs to compare."""
    config = fake_config(root, gpus=1, step_s=0.01, max_steps=2)
    store = await JobStore.open(config.db_path)
    ids = []
    try:
        for n, lr in enumerate(("1e-4", "2e-4", "5e-5")):
            out = root / "output" / f"cmp-{n}"
            run = out / f"v0-{time.strftime('%Y%m%d-%H%M%S')}"
            run.mkdir(parents=True)
            with (run / "logging.jsonl").open("w") as f:
                for step in range(1, steps + 1):
                    common = {
                        "epoch": step / steps,
                        "global_step/max_steps": f"{step}/{steps}",
                        "elapsed_time": f"{step}s",
                        "remaining_time": "1s",
                        "train_speed(s/it)": 1.0,
                    }
                    loss = 2.0 / (1 + 0.01 * step * float(lr) / 1e-4)
                    f.write(
                        json.dumps(
                            {
                                "loss": loss,
                                "grad_norm": 0.5,
                                "learning_rate": float(lr),
                                "token_acc": 0.5,
                                "memory(GiB)": 20.1,
                                **common,
                            }
                        )
                        + "\n"
                    )
                    if step % 50 == 0:
                        f.write(json.dumps({"eval_loss": loss * 1.05, "eval_runtime": 3.0, **common}) + "\n")
            job = await store.create(
                Job(
                    id="",
                    kind=Kind.VLM,
                    state=JobState.SUCCEEDED,
                    output_dir=str(out),
                    gpus=(str(n),),
                    run_dir=str(run),
                    started_at=time.time() - steps,
                    finished_at=time.time(),
                    argv=("swift", "sft", "--learning_rate", lr, "--output_dir", str(out)),
                )
            )
            ids.append(job.id)
    finally:
        await store.close()
    await asyncio.to_thread(_bulk_fill, config.db_path, n_jobs - len(ids))
    return ids


def _compare_page(root: Path, ids: list[str], n_jobs: int, steps: int, samples: int) -> Row:
    url_of = "/compare?" + "&".join(f"job={i}" for i in ids)
    with serve(root) as (url, _), requests.Session() as session:
        _timed(session, [f"{url}{url_of}"] * 10)  # warm-up (templates compiled, the three files read once)
        times = _timed(session, [f"{url}{url_of}"] * samples)
        size = len(session.get(f"{url}{url_of}", timeout=10).content)
    return Row(
        f"Web: the compare page (3 runs of {steps:,} logged steps each, chart data and what differs) with "
        f"{n_jobs:,} jobs in the store, real HTTP on loopback",
        f"p50 {pct(times, 50) * 1000:.1f} ms, p99 {pct(times, 99) * 1000:.1f} ms ({size / 1024:.0f} KiB)",
        "",
        None,
        "p99 < 50 ms",
        pct(times, 99) < 0.050,
    )


async def compare_figures(n_jobs: int, steps: int, samples: int) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ids = await _compared_root(root, n_jobs, steps)
        return [await asyncio.to_thread(_compare_page, root, ids, n_jobs, steps, samples)]


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


TODAY = "dd7bb9b"  # the commit whose live protocol the baselines were measured on: one SSE stream a page
TODAY_KIB_MIN = {"the jobs page": 1802.5, "a running job's page": 66.2}  # `python -m bench live` there, 60 s
GOAL = {"the jobs page": 0.1, "a running job's page": 0.1}


class _Tab:
    """One open tab's live stream, read in a thread: when each chunk came and its size on the wire."""

    def __init__(self, open_stream: Callable[[], requests.Response]) -> None:
        self.got: list[tuple[float, int]] = []
        self.reply = open_stream()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for chunk in self.reply.raw.stream(None, decode_content=False):  # as sent: compressed or not
                self.got.append((time.monotonic(), len(chunk)))
        except (requests.RequestException, urllib3.exceptions.HTTPError, AttributeError, ValueError, OSError):
            return  # closed under the reader

    def bytes_between(self, t0: float, t1: float) -> int:
        return sum(n for at, n in list(self.got) if t0 <= at < t1)

    def close(self) -> None:
        self.reply.close()


def _tab_bytes(root: Path, running: int, window_s: float) -> list[Row]:
    with serve(root) as (url, _), requests.Session() as session:
        jobs = [
            session.post(
                f"{url}/training/llm/jobs",
                json={"gpu_id": str(i), "output_dir": f"output/t{i}", "start": True},
                timeout=10,
            ).json()["job_id"]
            for i in range(running)
        ]
        deadline = time.monotonic() + 120
        while any((session.get(f"{url}/training/jobs/{j}/status", timeout=10).json()["step"] or 0) < 2 for j in jobs):
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark's jobs did not start")
            time.sleep(0.5)
        pages = {"the jobs page": "/", "a running job's page": f"/jobs/{jobs[0]}"}
        tabs = {
            (name, compressed): _Tab(lambda p=path, c=compressed: _live(url, p, c))  # type: ignore[misc]
            for name, path in pages.items()
            for compressed in (True, False)
        }
        time.sleep(3)  # a bench's settling time: past each tab's first message
        t0 = time.monotonic()
        time.sleep(window_s)
        t1 = time.monotonic()
        got = {key: tab.bytes_between(t0, t1) * 60 / window_s / 1024 for key, tab in tabs.items()}
        for tab in tabs.values():
            tab.close()
    rows = []
    for name in pages:
        wire, plain, today = got[name, True], got[name, False], TODAY_KIB_MIN[name]
        goal = GOAL[name]
        rows.append(
            Row(
                f"Web: bytes a tab of {name} receives per minute while {running} jobs run (a step and a "
                f"log line a second each, {window_s:.0f} s)",
                f"{wire:.1f} KiB/min gzipped ({plain:.1f} KiB/min uncompressed)",
                f"{today:.1f} KiB/min (one SSE stream a page, {TODAY})",
                wire / today,
                f"<= 1/{1 / goal:.0f} of today's" if goal else "",
                wire <= goal * today if goal else None,
            )
        )
    return rows


async def tab_bytes(running: int, window_s: float) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        await fill_root(root, 200)  # a full first page: 50 rows
        fake_config(
            root, gpus=running, step_s=1.0, max_steps=100_000, logging_steps=1, env={"FAKE_SWIFT_PRINT_STEPS": "1"}
        )
        return await asyncio.to_thread(_tab_bytes, root, running, window_s)
