"""`python -m bench [--short]`: every figure in one run, printed as a table of figures, baselines and ratios.

--short runs each figure briefly (CI uses it to check the benchmarks still work); the README's table comes from a
full run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
import time
import traceback
from collections.abc import Awaitable, Callable

from bench import ack_figures, api_figures, history_figures, runner_figures, slack_figures, try_figures, web_figures
from bench.common import Row, machine


def table(rows: list[Row]) -> str:
    head = ["figure", "measured", "baseline", "ratio", "goal", "met"]
    body = [
        [
            r.figure,
            r.measured,
            r.baseline,
            f"{r.ratio:.3f}" if r.ratio is not None else "",
            r.goal,
            {True: "yes", False: "NO", None: ""}[r.met],
        ]
        for r in rows
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


async def run(short: bool, only: set[str]) -> list[Row]:
    figures: dict[str, Callable[[], Awaitable[list[Row]]]] = {  # the idle row first: what every hour costs
        "idle": lambda: slack_figures.idle_cost(window_s=10 if short else 60),
        "idle-serve": lambda: slack_figures.idle_serve_cost(window_s=10 if short else 60),
        "ack": lambda: ack_figures.ack_latency(burst=20 if short else 50, stream=40 if short else 600),
        "overhead": lambda: runner_figures.job_overhead(pairs=1 if short else 5),
        "watching": lambda: runner_figures.watching_cost(window_s=8 if short else 60),
        "slack": lambda: slack_figures.slack_budget(jobs=20, minutes=0.3 if short else 5.0),
        "queue": lambda: runner_figures.queue_efficiency(job_s=2 if short else 10),
        "store": lambda: runner_figures.store_latency(n_jobs=1000 if short else 10_000, samples=50 if short else 300),
        "api": lambda: api_figures.api_latency(
            n_jobs=1000 if short else 10_000, samples=50 if short else 300, creates=3 if short else 10
        ),
        "try": lambda: try_figures.try_latency(rounds=1 if short else 3),
        "web": lambda: web_figures.web_figures(
            n_jobs=1000 if short else 10_000,
            samples=50 if short else 300,
            pages=2 if short else 5,
            window_s=5 if short else 30,
        ),
        "history": lambda: history_figures.history_figures(
            n_jobs=2000 if short else 100_000, samples=50 if short else 300
        ),
        "compare": lambda: web_figures.compare_figures(
            n_jobs=10_000 if short else 100_000, steps=2_000, samples=50 if short else 300
        ),
        "live": lambda: web_figures.tab_bytes(running=8, window_s=10 if short else 60),
    }
    rows: list[Row] = []
    for name, figure in figures.items():
        if only and name not in only:
            continue
        t0 = time.monotonic()
        print(f"… {name}", file=sys.stderr, flush=True)
        try:
            rows += await figure()
        except Exception as exc:  # one broken figure must not lose the others' rows: a row says it failed
            traceback.print_exc()
            rows.append(Row(f"{name}: the figure failed", f"{type(exc).__name__}: {exc}"[:200], met=False))
        print(f"  {name} done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--short", action="store_true", help="a quick pass of every figure (CI)")
    parser.add_argument(
        "figures",
        nargs="*",
        help="only these: idle idle-serve ack overhead watching slack queue store api try web compare live history",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rows = asyncio.run(run(args.short, set(args.figures)))
    print(f"\ntrainbot benchmarks, {dt.date.today()}, {machine()}{' (short run)' if args.short else ''}\n")
    print(table(rows))
    return 1 if any(r.figure.endswith(": the figure failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
