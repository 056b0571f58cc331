"""VLM jobs are real too: the tiny Qwen2.5-VL with its processor, generated images, the real `swift sft` (CPU).

Qwen2.5-VL needs torchvision and qwen-vl-utils, and PyPI's torchvision does not load beside the CPU build of
torch 2.13 the bot's venv uses; so this swift lives in its own venv (`.venv-vlm`, made by `make test`), which is
also how a team runs swift from another environment than the bot's (`swift.bin`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from demo.run import build_tiny_assets, tiny_config_toml
from runner.config import Config, load_config
from runner.supervisor import JobRequest
from storage.models import ExportState, Job, JobState, Kind
from tests.conftest import ASSET_CACHE, REPO, OpenRuntime
from tests.waiting import wait_until

pytestmark = pytest.mark.swift
VLM_SWIFT = REPO / ".venv-vlm" / "bin" / "swift"


@pytest.fixture
def vlm_config(tmp_path: Path) -> Config:
    if not VLM_SWIFT.exists():
        pytest.skip(f"{VLM_SWIFT} is missing: `make test` builds it (torch 2.14.1 + torchvision + ms-swift)")
    assets = build_tiny_assets(ASSET_CACHE / "vlm", str(VLM_SWIFT), kind="vlm")
    path = tmp_path / "trainbot.toml"
    path.write_text(tiny_config_toml(assets, swift_bin=str(VLM_SWIFT), kind="vlm"))
    return load_config(path, base_dir=tmp_path)


async def test_vlm_job_trains_and_exports(vlm_config: Config, open_runtime: OpenRuntime) -> None:
    rt = await open_runtime(vlm_config)
    overrides = {"max_pixels": "12544", "batch_size": "2", "lora_rank": "4"}  # what a user may set on `/train vlm`
    job = await rt.supervisor.submit(JobRequest(Kind.VLM, ("cpu",), vlm_config.base_dir / "output" / "v", overrides))
    assert "--freeze_vit" in job.argv and job.env["MAX_PIXELS"] == "12544"
    job_id = job.id

    async def ended() -> Job | None:
        j = await rt.store.require(job_id)
        return j if j.state.is_terminal and j.export_state is not ExportState.EXPORTING else None

    job = await wait_until(ended, 240, "the VLM job to end")
    log = Path(job.train_run.log_path or "").read_text()
    assert job.state is JobState.SUCCEEDED, (job.failure, log[-3000:])
    assert job.train_run.log_path and job.train_run.log_path.endswith(f"vlm_training_{job.id}.log")
    assert "[151655 * 4]" in log  # each image really became 4 vision tokens in the prompt
    assert job.progress.step == job.progress.max_steps and job.progress.last_checkpoint
    await rt.supervisor.export(job.id, by="U1")
    job = await wait_until(ended, 240, "the VLM export to end")
    assert job.export_state is ExportState.EXPORTED
    assert (Path(job.export_dir or "") / "preprocessor_config.json").exists() or (
        Path(job.export_dir or "") / "processor_config.json"
    ).exists()
    assert dataclasses.asdict(job.progress)["loss"] is not None
