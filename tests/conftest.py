"""Shared fixtures: a real SQLite store, configs rooted in a temp dir, and the tiny local model for real swift runs."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from demo.run import build_tiny_assets, default_swift_bin, tiny_config_toml
from runner.config import Config, load_config
from runner.runtime import Runtime
from storage.jobs import JobStore
from tests import processes
from tests.slack_env import standin
from tests.slack_standin import SlackStandIn

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent  # the venv running the tests: its `trainbot`, its python
ASSET_CACHE = REPO / ".cache" / "tiny"  # deterministic, idempotent: built once per machine

MakeConfig = Callable[..., Config]
OpenRuntime = Callable[[Config], Awaitable[Runtime]]


def pytest_configure(config: pytest.Config) -> None:
    processes.adopt_orphans()  # a trainer whose `trainbot serve` has ended stays in sight of the check below


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """Fails a test that leaves a process running (tests/processes.py), after killing it: a trainer left behind
    would slow every test after it."""
    before = processes.children()
    yield
    left = processes.leftovers(before)
    if left:
        pytest.fail("the test left processes running (now killed):\n" + "\n".join(left), pytrace=False)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(base_dir=tmp_path)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    s = await JobStore.open(tmp_path / "db" / "trainbot.db")
    yield s
    await s.close()


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    """The Slack stand-in on 127.0.0.1, with the tokens and secret the bot under test is given."""
    async with standin() as s:
        yield s


@pytest.fixture(scope="session")
def tiny_llm() -> dict[str, Any]:
    return build_tiny_assets(ASSET_CACHE / "llm", default_swift_bin())


@pytest.fixture
def make_config(tmp_path: Path, tiny_llm: dict[str, Any]) -> MakeConfig:
    """A config for real swift runs on the tiny model: `make_config(extra={...}, sections="[gpus]\\n...")`."""

    def make(extra: Mapping[str, object] | None = None, sections: str = "", swift_bin: str | None = None) -> Config:
        path = tmp_path / "trainbot.toml"
        path.write_text(
            tiny_config_toml(tiny_llm, swift_bin=swift_bin or default_swift_bin(), extra=extra, sections=sections)
        )
        return load_config(path, base_dir=tmp_path)

    return make


@pytest.fixture
async def open_runtime() -> AsyncIterator[OpenRuntime]:
    opened: list[Runtime] = []

    async def open_(config: Config) -> Runtime:
        rt = await Runtime.open(config)
        await rt.store.register_reader("tests", keep_s=3600.0)  # reads nothing: every notice is kept to look at
        await rt.start()
        opened.append(rt)
        return rt

    yield open_
    for rt in opened:
        await rt.close()
