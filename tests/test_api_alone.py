"""`trainbot serve` without Slack: the HTTP API alone, and an open bind without tokens or a port in use refused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import requests

from tests.api_env import serving
from tests.conftest import VENV_BIN
from tests.slack_env import fake_config


def test_serve_without_slack_runs_the_api_alone_and_refuses_an_open_bind_without_tokens(tmp_path: Path) -> None:
    fake_config(tmp_path)
    with serving(tmp_path) as served:
        assert requests.get(f"{served.url}/healthz", timeout=10).json() == {"ok": True, "jobs_active": 0}
        assert "serving Slack" not in served.log
    assert served.proc.returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINBOT_", "SLACK_"))}
    refused = subprocess.run(
        [
            str(VENV_BIN / "trainbot"),
            "--config",
            str(tmp_path / "trainbot.toml"),
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        env=env,
    )
    assert refused.returncode == 2 and b"without API tokens" in refused.stderr
    assert b"TRAINBOT_API_TOKENS" in refused.stderr
    with serving(tmp_path) as served:  # a port in use is said, not a traceback
        port = served.url.rsplit(":", 1)[1]
        taken = subprocess.run(
            [str(VENV_BIN / "trainbot"), "--config", str(tmp_path / "trainbot.toml"), "serve", "--port", port],
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
            env=env,
        )
    assert taken.returncode == 2 and f"cannot listen on http://127.0.0.1:{port}".encode() in taken.stderr
    assert b"--port" in taken.stderr and b"Traceback" not in taken.stderr
