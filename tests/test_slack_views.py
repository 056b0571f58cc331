"""Block Kit by value: the job card, thread notices, the App Home, the loss curve; and the app manifest."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import yaml

from bot.charts import loss_curve_png
from bot.slack import views
from bot.slack.home import home_view
from runner.gpus import Gpu, GpuSnapshot
from runner.metrics import MetricsReader
from storage.actors import Outside, User
from storage.failure_facts import CudaOom, JobFailure
from storage.models import ExportState, Job, JobState, Kind, Progress
from storage.notices import (
    CheckpointSaved,
    ExportSucceeded,
    JobFailed,
    JobStarted,
    JobStopped,
    JobSucceeded,
    Notice,
)
from storage.waiting import GpusBusy

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "swift46"
T0 = 1_700_000_000.0


def job(**changes: Any) -> Job:
    base = Job(
        id="ab3cd",
        kind=Kind.LLM,
        state=JobState.RUNNING,
        output_dir="/srv/output/x",
        gpus=("0", "1"),
        argv=("swift", "sft"),
        user_id="U0ALICE",
        slack_channel="C1",
        created_at=T0,
        started_at=T0 + 5,
        updated_at=T0 + 65,
        progress=Progress(step=15, max_steps=50, loss=6.8712, remaining_s=40.0),
    )
    return base.replace(**changes)


def texts_of(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def action_ids(msg: views.Message) -> list[str]:
    return [e["action_id"] for b in msg.blocks if b["type"] == "actions" for e in b["elements"]]


def test_running_card() -> None:
    card = views.job_card(job())
    assert card.text == "LLM job ab3cd is running (step 15/50)"
    head, fields, progress, actions = card.blocks
    assert head["text"]["text"] == "🏃 *LLM job `ab3cd`* is *running*"
    assert [f["text"] for f in fields["fields"]] == [
        "*GPUs*\nGPU 0,1",
        "*Started by*\n<@U0ALICE>",
        "*Output*\n`/srv/output/x`",
        "*State*\nrunning for 1m 00s",
    ]
    assert progress["text"]["text"] == "[██████░░░░░░░░░░░░░░] 30% step 15/50 · loss 6.871 · ETA 40s"
    [stop] = actions["elements"]
    assert (stop["action_id"], stop["value"], stop["style"]) == ("stop_job", "ab3cd", "danger")
    assert set(stop["confirm"]) == {"title", "text", "confirm", "deny", "style"}


def test_queued_card_says_why() -> None:
    card = views.job_card(
        job(state=JobState.QUEUED, started_at=None, progress=Progress(), queue_reason=GpusBusy({"0": "zz9zz"}))
    )
    assert "*State*\\nqueued" in texts_of(card.blocks)
    assert card.blocks[2]["text"]["text"] == "waiting: GPU 0 is held by job zz9zz"
    assert card.blocks[3] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "⏳ GPU 0 is held by job zz9zz"}],
    }
    assert action_ids(card) == ["stop_job"]


def test_ended_cards() -> None:
    done = job(
        state=JobState.SUCCEEDED,
        finished_at=T0 + 125,
        progress=Progress(
            step=50, max_steps=50, loss=6.86, train_loss=6.88, last_checkpoint="/srv/output/x/v0/checkpoint-50"
        ),
    )
    card = views.job_card(done)
    assert "*State*\\nsucceeded after 2m 00s" in texts_of(card.blocks)
    assert "step 50/50 · final loss 6.88" in texts_of(card.blocks)
    assert action_ids(card) == ["export_job"]
    assert action_ids(views.job_card(done.replace(export_state=ExportState.EXPORTING))) == []
    again = views.job_card(done.replace(export_state=ExportState.EXPORTED, export_dir="/srv/m"))
    assert "📦 export exported → `/srv/m`" in texts_of(again.blocks)
    assert again.blocks[-1]["elements"][0]["text"]["text"] == "Export again"
    failed = views.job_card(
        job(state=JobState.FAILED, finished_at=T0 + 9, progress=Progress(), failure=JobFailure(CudaOom("2.00 GiB")))
    )
    assert (
        "❌ ran out of GPU memory (CUDA OOM, tried to allocate 2.00 GiB) · 💡 lower max_length or the batch size, "
        "or use a GPU with more memory"
    ) in texts_of(failed.blocks)
    assert action_ids(failed) == []  # no checkpoint: nothing to export
    stopped = views.job_card(job(state=JobState.STOPPED, stopped_by=User("U0BOB"), finished_at=T0 + 30))
    assert "stop requested by <@U0BOB>" in texts_of(stopped.blocks)
    assert views.job_card(job(state=JobState.STOPPING, stopped_by=User("U0BOB"))).blocks[-1]["type"] == "context"
    outside = views.job_card(job(state=JobState.STOPPED, stopped_by=Outside(), finished_at=T0 + 30))
    assert "✋ stopped by someone outside trainbot" in texts_of(outside.blocks)


def test_notices_in_the_thread() -> None:
    started = views.notice_message(
        Notice("ab3cd", JobStarted(command="swift sft --model m", host="gpu1", gpus=("0", "1"))), job()
    )
    assert started.blocks[0]["text"]["text"] == "🚀 Job `ab3cd` started on gpu1 (GPU 0,1) with:"
    assert started.blocks[1]["text"]["text"] == "```swift sft --model m```" and not started.broadcast
    ok = views.notice_message(
        Notice("ab3cd", JobSucceeded(duration_s=75, final_loss=6.88123, last_checkpoint="/c")), job()
    )
    assert ok.broadcast and ok.text == "✅ job `ab3cd` succeeded in 1m 15s, final loss 6.881; last checkpoint `/c`"
    tail = [f"line {i} " + "x" * 100 for i in range(100)]
    failed = views.notice_message(Notice("ab3cd", JobFailed(failure=JobFailure(CudaOom()), tail=tuple(tail))), job())
    assert failed.broadcast and failed.blocks[0]["text"]["text"] == (
        "❌ Job `ab3cd` failed: ran out of GPU memory (CUDA OOM)"
        "\n💡 lower max_length or the batch size, or use a GPU with more memory"
    )
    code = failed.blocks[1]["text"]["text"]
    assert len(code) <= views.SECTION_MAX and code.startswith("```…") and code.endswith("line 99 " + "x" * 100 + "```")
    stopped = views.notice_message(Notice("ab3cd", JobStopped(by=User("U0BOB"), step=20)), job())
    assert stopped.broadcast and "stopped by <@U0BOB> at step 20" in stopped.text
    export = views.notice_message(Notice("ab3cd", ExportSucceeded(export_dir="/m")), job())
    assert export.broadcast
    assert not views.notice_message(Notice("ab3cd", CheckpointSaved(step=10, path="/c")), job()).broadcast


def test_minor_notices_share_a_reply() -> None:
    ns = [
        Notice("ab3cd", JobStarted(command="swift sft", host="h", gpus=("0",)), id=7),
        Notice("ab3cd", CheckpointSaved(step=10, path="/c10"), id=9),
    ]
    msg = views.notices_message(ns, job())
    assert len(msg.blocks) == 3 and "checkpoint at step 10" in msg.text and not msg.broadcast
    meta = views.notice_metadata(ns)
    assert meta["event_payload"] == {
        "notice_id": 7,
        "job_id": "ab3cd",
        "topic": "job_started",
        "notice_ids": [7, 9],
        "topics": ["job_started", "checkpoint"],
    }
    assert views.told_notices({"metadata": meta}, "ab3cd") == [7, 9]
    assert views.told_notices({"metadata": meta}, "zz9zz") == []
    assert views.told_notices({"text": "a human"}, "ab3cd") == []


def test_clip_keeps_code_blocks_closed() -> None:
    text = "```" + "y" * 5000 + "```"
    clipped = views.clip(text)
    assert len(clipped) <= views.SECTION_MAX and clipped.endswith("```") and clipped.count("```") == 2


def test_home_view() -> None:
    gpus = tuple(Gpu(str(i), "H100", 1024.0 * i, 81920.0, 10.0 * i, (), "inventory") for i in range(2))
    snapshot = GpuSnapshot(gpus, None, dt.datetime(2026, 1, 1, 12, 0, 0), "inventory")
    active = [job(id=f"a{i}aaa") for i in range(40)]
    recent = [job(id=f"r{i}rrr", state=JobState.SUCCEEDED, finished_at=T0 + 100) for i in range(30)]
    view = home_view(active, recent, snapshot, {"0": "a0aaa"}, T0)
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    text = texts_of(view["blocks"])
    assert "*Running and queued* (40)" in text and "… and 10 more" in text and "*Recently finished* (10)" in text
    assert "*GPU 0* H100 · 0.0/80.0 GiB · 0% · job `a0aaa`" in text and "*GPU 1* H100" in text and "free" in text
    empty = texts_of(home_view([], [], snapshot, {}, T0)["blocks"])
    assert "Nothing running" in empty and "No finished jobs yet" in empty


def test_loss_curve_from_a_real_run(tmp_path: Path) -> None:
    """The chart's points are runner/metrics.py's (the one reader of logging.jsonl): train and eval loss by step."""
    lines = (FIXTURES / "sft_ok.logging.jsonl").read_text().splitlines()
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "logging.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / "logging.jsonl").write_text((FIXTURES / "sft_interrupted.logging.jsonl").read_text())
    ok, interrupted = (MetricsReader().read([tmp_path / run]).series for run in ("ok", "stopped"))
    train = ok["loss"]
    assert train[0] == (1, 6.92396879) and train[-1] == (50, 6.8669281) and len(train) == 11 and "eval_loss" not in ok
    assert [step for step, _ in interrupted["eval_loss"]] == [10, 20, 30]
    assert loss_curve_png(tmp_path / "stopped", "job ab3cd: loss") is not None  # eval points drawn too
    png = loss_curve_png(tmp_path / "ok", "job ab3cd: loss")
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    (tmp_path / "logging.jsonl").write_text('{"train_dataset": "x"}\n')
    assert loss_curve_png(tmp_path, "nothing") is None
    assert loss_curve_png(tmp_path / "missing", "nothing") is None


def test_manifest() -> None:
    manifest = yaml.safe_load((REPO / "manifest.yml").read_text())
    features, settings = manifest["features"], manifest["settings"]
    [cmd] = features["slash_commands"]
    assert cmd["command"] == "/train" and cmd["description"] and "gpu=" in cmd["usage_hint"]
    assert len(cmd["description"]) <= 100 and len(cmd["usage_hint"]) <= 1000
    assert features["app_home"]["home_tab_enabled"] is True and features["bot_user"]["display_name"]
    assert settings["socket_mode_enabled"] is True and settings["interactivity"]["is_enabled"] is True
    assert settings["event_subscriptions"]["bot_events"] == [
        "app_home_opened",
        "app_mention",
        "message.channels",
        "message.groups",
    ]
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert {"commands", "chat:write", "files:write"} <= set(scopes) and len(scopes) == len(set(scopes))
    assert set(scopes) <= {
        "commands",
        "chat:write",
        "files:write",
        "channels:history",
        "groups:history",
        "usergroups:read",
        "app_mentions:read",
    }
    assert manifest["display_information"]["name"] and len(manifest["display_information"]["description"]) <= 140
