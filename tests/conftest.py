"""Shared fixtures: a real SQLite store in a temp dir and a config rooted there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.config import Config, load_config
from storage.jobs import JobStore

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(base_dir=tmp_path)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    s = await JobStore.open(tmp_path / "db" / "trainbot.db")
    yield s
    await s.close()
