"""A job trained once for the try tests (tests/conftest.py's `trained`: tests/test_try.py, test_try_fronts.py), and
the console that asks its model."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.run import default_swift_bin, tiny_config_toml
from runner.access import Caller
from runner.config import Config, load_config

VENV_BIN = Path(sys.executable).parent  # the venv running the tests: its `trainbot`
CONSOLE = Caller(console=True)


@dataclass(frozen=True)
class Trained:
    root: Path
    job_id: str

    def config(self, name: str = "trainbot.toml", **overrides: Any) -> Config:
        return load_config(
            self.root / name, base_dir=self.root, overrides={f"runner.{k}": v for k, v in overrides.items()}
        )


def train_one(root: Path, tiny_llm: dict[str, Any]) -> Trained:
    """A job trained to its end on the CPU, through the real console; a second config (`long.toml`) makes long
    jobs on the fake GPU 0, on the same store."""
    gpu0 = '[gpus]\ninventory = 1\n[access]\ntry_users = ["http:anonymous", "UANN", "UCAT"]\n'
    (root / "trainbot.toml").write_text(tiny_config_toml(tiny_llm, swift_bin=default_swift_bin(), sections=gpu0))
    (root / "long.toml").write_text(
        tiny_config_toml(tiny_llm, swift_bin=default_swift_bin(), sections=gpu0, extra={"num_train_epochs": 40})
    )
    done = subprocess.run(
        [str(VENV_BIN / "trainbot"), "--config", str(root / "trainbot.toml"), "console", "--wait"],
        input="llm gpu=cpu out=output/tried\n",
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
        check=True,
    )
    assert "succeeded" in done.stdout, done.stdout[-3000:]
    job_id = done.stdout.split("Job ", 1)[1].split()[0]
    return Trained(root, job_id)


def console(trained: Trained, typed: str) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "trainbot"), "--config", str(trained.root / "trainbot.toml"), "console"],
        input=typed,
        capture_output=True,
        text=True,
        cwd=trained.root,
        timeout=300,
        check=True,
    )
    return done.stdout
