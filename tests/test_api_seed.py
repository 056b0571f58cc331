"""The seed's own example, run as its users run it: a Python script with `requests` against `trainbot serve`.

Real uvicorn, real HTTP, real swift on the tiny model; the script is the seed's text, only its address moved from
localhost:8000 to the port this test got (tests run side by side on one machine).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.api_env import serving
from tests.conftest import MakeConfig
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.swift

SEED_EXAMPLE = """\
import requests

# 创建LLM训练任务 - 只需要两个参数
response = requests.post("http://localhost:8000/training/llm/jobs", json={
    "gpu_id": "0",
    "output_dir": "output/llm_test"
})

job_id = response.json()["job_id"]
print(f"创建任务: {job_id}")

# 启动训练
requests.post(f"http://localhost:8000/training/jobs/{job_id}/start")

# 获取状态
status = requests.get(f"http://localhost:8000/training/jobs/{job_id}/status").json()
print(f"训练状态: {status['status']}, 进度: {status['progress']}%")
"""


def test_the_seeds_example_runs_a_real_job_to_the_end_and_exports_it(make_config: MakeConfig, tmp_path: Path) -> None:
    make_config(sections="[gpus]\ninventory = 1\n")
    with serving(tmp_path) as api:
        script = SEED_EXAMPLE.replace("http://localhost:8000", api.url)
        ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        job_id = ran.stdout.split("创建任务: ")[1].split()[0]
        assert "训练状态: " in ran.stdout and "进度: " in ran.stdout

        def status() -> dict[str, Any]:
            body: dict[str, Any] = requests.get(f"{api.url}/training/jobs/{job_id}/status", timeout=10).json()
            return body

        wait_until_sync(lambda: status()["status"] in ("succeeded", "failed", "stopped"), 300, "the job to end")
        final = status()
        assert final["status"] == "succeeded" and final["progress"] == 100, final
        exported = requests.post(f"{api.url}/training/jobs/{job_id}/export", timeout=30)
        assert exported.status_code == 200 and exported.json()["export_status"] == "exporting", exported.text
        wait_until_sync(lambda: status()["export_status"] != "exporting", 300, "the export to end")
        job = requests.get(f"{api.url}/training/jobs/{job_id}", timeout=10).json()
        assert job["export_status"] == "exported", job
        assert Path(job["export_dir"], "config.json").is_file()
        assert job["output_dir"] == str(tmp_path / "output" / "llm_test")
