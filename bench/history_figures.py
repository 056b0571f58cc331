"""The history with 100,000 jobs: the jobs page, older pages, searches and sorts, in the browser's pages and the API.

The store is filled straight through storage's own row mapping (storage/rows.py `to_row`) in one transaction, with
jobs shaped like a team's: named runs of a few experiment families, 40 owners, ended over a year, with losses,
durations and real-length command lines; the search index is kept by the migration's triggers as it would be.
`trainbot serve` runs in its own process and is asked over real HTTP on loopback (one kept-alive connection), as
anonymous loopback visitors (the default config). Each sample asks for another page or another search.
"""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from bench.api_figures import serve
from bench.common import Row, fake_config, pct
from storage.failure_facts import CudaOom, JobFailure
from storage.jobs import JobStore
from storage.models import Job, JobState, Kind, Progress
from storage.rows import to_row

FAMILIES = (
    "lr-sweep",
    "qwen-base",
    "baseline",
    "ablation",
    "vlm-ocr",
    "long-ctx",
    "rank16",
    "distill",
    "warmup",
    "epoch3",
)
GOAL_S = 0.050
_NEXT = re.compile(r'<a rel="next"[^>]* href="([^"]+)"')


def _argv(out: str) -> tuple[str, ...]:
    """A command line as long as the fixed recipe's (about 40 words)."""
    flags = {
        "--model": "Qwen/Qwen2.5-7B-Instruct",
        "--train_type": "lora",
        "--dataset": "AI-ModelScope/alpaca-gpt4-data-zh#500 AI-ModelScope/alpaca-gpt4-data-en#500 "
        "swift/self-cognition#500",
        "--torch_dtype": "bfloat16",
        "--num_train_epochs": "1",
        "--per_device_train_batch_size": "1",
        "--learning_rate": "1e-4",
        "--lora_rank": "8",
        "--lora_alpha": "32",
        "--target_modules": "all-linear",
        "--gradient_accumulation_steps": "16",
        "--eval_steps": "50",
        "--save_steps": "50",
        "--save_total_limit": "2",
        "--logging_steps": "5",
        "--max_length": "2048",
        "--output_dir": out,
        "--warmup_ratio": "0.05",
        "--dataloader_num_workers": "4",
    }
    return ("swift", "sft", *(w for pair in flags.items() for w in pair))


def _rows(n: int, rng: random.Random, names: list[str]) -> Iterator[dict[str, Any]]:
    start = time.time() - 365 * 86400
    for i in range(n):
        created = start + i * (365 * 86400 / n)
        began = created + rng.uniform(0, 600)
        ended = began + rng.uniform(300, 12 * 3600)
        family = rng.choice(FAMILIES)
        name = f"{family}-{i}"
        names.append(name)
        out = f"/srv/trainbot/output/{family}/{name}"
        state = rng.choice((JobState.SUCCEEDED,) * 6 + (JobState.FAILED, JobState.STOPPED))
        gpus = tuple(str(g) for g in range(rng.choice((1, 1, 2, 4))))
        job = Job(
            id=f"{i:05x}",
            kind=Kind.VLM if i % 3 == 0 else Kind.LLM,
            state=state,
            output_dir=out,
            gpus=gpus,
            argv=_argv(out),
            user_id=f"U{rng.randrange(40):03d}",
            slack_channel="C1",
            name=name,
            created_at=created,
            updated_at=ended,
            started_at=began,
            finished_at=ended,
            failure=JobFailure(CudaOom()) if state is JobState.FAILED else None,
            progress=Progress(
                step=100, max_steps=100, loss=round(rng.uniform(0.2, 3.0), 4), eval_loss=round(rng.uniform(0.3, 3.2), 4)
            ),
        )
        yield to_row(job) | {"queue_seq": i + 1}


async def fill_history(root: Path, n_jobs: int) -> list[str]:
    """A fake-swift config in `root` whose store holds `n_jobs` ended jobs (schema made by the store itself); their
    names, oldest first."""
    config = fake_config(root, gpus=1, step_s=0.01, max_steps=2)
    await (await JobStore.open(config.db_path)).close()
    names: list[str] = []
    rows = _rows(n_jobs, random.Random(29), names)
    first = next(rows)
    sql = f"INSERT INTO jobs ({', '.join(first)}) VALUES ({', '.join('?' * len(first))})"
    with sqlite3.connect(config.db_path) as db:
        db.execute(sql, list(first.values()))
        db.executemany(sql, (list(r.values()) for r in rows))
    db.close()
    return names


def _timed(session: requests.Session, urls: list[str]) -> tuple[list[float], list[str]]:
    times, bodies = [], []
    for url in urls:
        t0 = time.perf_counter()
        reply = session.get(url, timeout=30)
        times.append(time.perf_counter() - t0)
        reply.raise_for_status()
        bodies.append(reply.text)
    return times, bodies


def _row(label: str, times: list[float]) -> Row:
    return Row(
        label,
        f"p50 {pct(times, 50) * 1000:.1f} ms, p99 {pct(times, 99) * 1000:.1f} ms",
        "",
        None,
        "p99 < 50 ms",
        pct(times, 99) < GOAL_S,
    )


def _figures(root: Path, names: list[str], samples: int) -> list[Row]:
    rng, n_jobs = random.Random(7), len(names)
    # a name as typed in another case, or its last part: each found in 1 to ~11 jobs (`x-12` is in `x-123` too)
    rare = [names[i].upper() if i % 2 else names[i].partition("-")[2] for i in rng.sample(range(n_jobs), samples)]
    common = [rng.choice(FAMILIES) for _ in range(samples)]  # a family: a tenth of the jobs
    rows = []
    with serve(root) as (url, _), requests.Session() as session:
        _timed(session, [f"{url}/"] * 10 + [f"{url}/training/all/jobs?limit=50"] * 10)  # warm-up
        times, pages = _timed(session, [f"{url}/"] * samples)
        assert f"{n_jobs:,} jobs" in pages[0], "the count"
        rows.append(
            _row(f"Web: the jobs page (first page of 50, with the count) with {n_jobs:,} jobs, real HTTP", times)
        )
        older: list[float] = []
        href = _NEXT.search(pages[0])
        while href and len(older) < samples:  # older pages one after the other, as the rel=next links lead
            t, (body,) = _timed(session, [url + href.group(1).replace("&amp;", "&")])
            older += t
            href = _NEXT.search(body)
        rows.append(_row(f"Web: older pages of 50 (rel=next, {len(older)} in a row) with {n_jobs:,} jobs", older))
        times, _ = _timed(session, [f"{url}/?q={q}" for q in rare])
        rows.append(_row(f"Web: a search by name (a name or part of one, 1-11 jobs) in {n_jobs:,} jobs", times))
        times, _ = _timed(session, [f"{url}/?q={q}" for q in common])
        rows.append(_row(f"Web: a search many jobs match (an experiment family, 1 in 10) in {n_jobs:,} jobs", times))
        times, _ = _timed(
            session,
            [f"{url}/?sort={rng.choice(('loss', '-loss', '-duration'))}&owner=U{i % 40:03d}" for i in range(samples)],
        )
        rows.append(_row(f"Web: one owner's jobs sorted by final loss or duration, {n_jobs:,} jobs", times))
        times, _ = _timed(session, [f"{url}/training/all/jobs?limit=50&q={q}" for q in rare + common])
        rows.append(_row(f"API: `GET /training/all/jobs?q=...` (50) with {n_jobs:,} jobs, real HTTP", times))
        times, _ = _timed(
            session, [f"{url}/training/all/jobs?limit=50&sort={s}" for s in ("loss", "-duration")] * (samples // 2)
        )
        rows.append(_row(f"API: `GET /training/all/jobs?sort=loss` or `-duration` (50) with {n_jobs:,} jobs", times))
    return rows


async def history_figures(n_jobs: int, samples: int) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.monotonic()
        names = await fill_history(root, n_jobs)
        filled = time.monotonic() - t0
        rows = await asyncio.to_thread(_figures, root, names, samples)
    rows.append(
        Row(
            f"History: {n_jobs:,} jobs written in one transaction (search index by its triggers)",
            f"{filled:.0f} s ({n_jobs / filled:,.0f} jobs/s)",
            "",
            None,
            "",
            None,
        )
    )
    return rows
