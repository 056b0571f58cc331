"""A job's logged metrics as series by step: runner/metrics on real ms-swift 4.6 output, and
`GET /training/jobs/{id}/metrics` over real HTTP against `trainbot serve` (fake swift)."""

from __future__ import annotations

import shutil
from pathlib import Path

import requests

from runner.metrics import MetricsReader
from tests.api_env import serving
from tests.slack_env import fake_config
from tests.waiting import wait_until_sync

FIXTURES = Path(__file__).parent / "fixtures" / "swift46"
VLM_STEPS = "[vlm]\nmax_steps = 30\nsave_steps = 10\neval_steps = 10\nlogging_steps = 1\n"


def test_every_number_swift_logged_is_a_series_by_whole_step(tmp_path: Path) -> None:
    run = tmp_path / "v0-20261128-052335"
    run.mkdir()
    shutil.copy(FIXTURES / "sft_interrupted.logging.jsonl", run / "logging.jsonl")
    metrics = MetricsReader().read([run])
    assert metrics.max_steps == 540
    for name in (
        "loss",
        "grad_norm",
        "learning_rate",
        "token_acc",
        "seconds_per_step",
        "elapsed_s",
        "epoch",
        "eval_loss",
        "eval_token_acc",
    ):
        steps = [s for s, _ in metrics.series[name]]
        assert steps == sorted(set(steps)) and all(isinstance(s, int) for s in steps), name
    assert metrics.series["loss"][0] == (1, 6.93784046)
    assert metrics.series["eval_loss"][0] == (10, 6.92885828)
    # an eval record repeats the step's speed and time: only its eval_* numbers count
    assert (10, 0.157691) not in metrics.series["seconds_per_step"]
    assert "global_step/max_steps" not in metrics.series and "remaining_time" not in metrics.series


def test_a_resumed_run_goes_on_from_its_checkpoint_and_a_growing_file_is_read_from_where_it_ended(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "v0-20261128-052335", tmp_path / "v1-20261128-053000"
    first.mkdir()
    second.mkdir()
    lines = (FIXTURES / "sft_ok.logging.jsonl").read_text().splitlines()
    (first / "logging.jsonl").write_text("\n".join(lines[:8]) + "\n")  # steps 1..35, then stopped
    # resumed from checkpoint-25: its first record is step 30 again, with another loss
    (second / "logging.jsonl").write_text(lines[6].replace("6.87509537", "5.5") + "\n")
    reader = MetricsReader()
    metrics = reader.read([first, second])
    loss = dict(metrics.series["loss"])
    assert loss[30] == 5.5 and 35 not in loss and loss[25] == 6.87934265  # the later run wins from its step on
    with (second / "logging.jsonl").open("a") as f:
        f.write(lines[8].replace("6.85944672", "5.4") + "\n" + lines[9][:20])  # step 40, and half a line
    metrics = reader.read([first, second])
    assert dict(metrics.series["loss"])[40] == 5.4 and max(dict(metrics.series["loss"])) == 40


def test_the_metrics_endpoint_serves_each_logged_metric_by_step_also_for_a_resumed_job(tmp_path: Path) -> None:
    fake_config(tmp_path, step_s=0.1, sections=VLM_STEPS, env={"FAKE_SWIFT_MEMORY_GIB": "3.5"})
    with serving(tmp_path) as api:
        job = requests.post(
            f"{api.url}/training/jobs",
            json={"gpu_id": "0", "output_dir": "output/m", "learning_rate": 2e-4, "start": True},
            timeout=10,
        )
        job_id = job.json()["job_id"]

        def status() -> str:
            return str(requests.get(f"{api.url}/training/jobs/{job_id}/status", timeout=10).json()["status"])

        def step() -> int:
            return int(requests.get(f"{api.url}/training/jobs/{job_id}/status", timeout=10).json()["step"] or 0)

        wait_until_sync(lambda: step() >= 12, 60, "a checkpoint at step 10 and a few steps more")
        assert requests.post(f"{api.url}/training/jobs/{job_id}/stop", timeout=10).status_code == 200
        wait_until_sync(lambda: status() == "stopped", 60, "the stop")
        assert requests.post(f"{api.url}/training/jobs/{job_id}/start", timeout=10).status_code == 200
        wait_until_sync(lambda: status() == "succeeded", 60, "the resumed run to end")

        reply = requests.get(f"{api.url}/training/jobs/{job_id}/metrics", timeout=10)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        series = body["series"]
        assert body["job_id"] == job_id and body["max_steps"] == 30 and len(body["run_dirs"]) == 2
        loss_steps = [s for s, _ in series["loss"]]
        assert loss_steps == list(range(1, 31))  # one curve by whole step: the resume took over from step 11
        assert [s for s, _ in series["eval_loss"]] == [10, 20, 30]
        assert {v for _, v in series["learning_rate"]} == {2e-4} and {v for _, v in series["memory_gib"]} == {3.5}
        for name in ("grad_norm", "token_acc", "seconds_per_step", "elapsed_s", "epoch"):
            assert len(series[name]) == 30, name

        only = requests.get(
            f"{api.url}/training/jobs/{job_id}/metrics", params=[("name", "loss"), ("name", "eval_loss")], timeout=10
        ).json()
        assert set(only["series"]) == {"loss", "eval_loss"}
        missing = requests.get(f"{api.url}/training/jobs/zzzzz/metrics", timeout=10)
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        fresh = requests.post(
            f"{api.url}/training/llm/jobs", json={"gpu_id": "1", "output_dir": "output/n"}, timeout=10
        ).json()["job_id"]
        assert requests.get(f"{api.url}/training/jobs/{fresh}/metrics", timeout=10).json()["series"] == {}
