"""The benchmarks still run (a short pass of the quick figures); their numbers are read in `make bench`, not here."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO, VENV_BIN


@pytest.mark.slow  # runs two benchmark figures
def test_bench_short_run_prints_the_table() -> None:
    out = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "bench", "--short", "queue", "store"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    table = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| figure | measured | baseline | ratio | goal | met |")
    figures = [line.split(" | ")[0] for line in table[1:]]
    assert any("queue: 6 x" in f for f in figures) and any("`list` with 1,000 jobs" in f for f in figures)
