"""The console prints plain text: no Slack mrkdwn (`*bold*`, backticks, `<@U…>` mentions) in what a job tells it.

The real `trainbot console` runs a job end to end with tests/fake_swift.py as swift.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from bot.slack import views
from bot.words import notices as notice_words
from bot.words.format import PLAIN, SLACK
from bot.words.profiles import note_words
from storage.notices import JobCreated, Notice
from storage.profile_notes import BatchSplit, LigerKernels
from tests.conftest import VENV_BIN
from tests.slack_env import fake_config


def test_a_console_job_end_to_end_prints_no_mrkdwn(tmp_path: Path) -> None:
    fake_config(tmp_path, steps=8, save_steps=4, eval_steps=4, step_s=0.05)
    typed = "llm gpu=0 out=output/plain\nlist\ngpus\n"
    out = subprocess.run(
        [str(VENV_BIN / "trainbot"), "--config", str(tmp_path / "trainbot.toml"), "console", "--wait"],
        input=typed,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=240,
        check=True,
    ).stdout
    for what in ("created", "started on", "saved a checkpoint", "eval at step", "succeeded in", "jobs (", "GPU 0"):
        assert what in out, (what, out[-3000:])
    for mark in ("*", "`", "<@"):
        assert mark not in out, (mark, out[-3000:])


def test_what_the_speed_profile_changed_is_told_in_the_thread_and_the_console() -> None:
    facts = (BatchSplit(micro=4, steps=4), LigerKernels())
    notes = [note_words(n) for n in facts]
    assert notes[0].startswith("per-device batch 4 × accumulation 4 instead of 1 × 16: the same 16 samples")
    created = Notice("ab12c", JobCreated(command="swift sft", profile="fast", profile_notes=facts))
    reply = views.profile_message(created)
    assert reply is not None and all(SLACK.text(n) in str(reply.blocks) for n in notes)
    console = notice_words.notice_text(created, PLAIN)
    assert "profile fast" in console and all(n in console for n in notes)
    exact = Notice("ab12c", JobCreated(command="swift sft", profile="exact"))
    assert views.profile_message(exact) is None and "profile" not in notice_words.notice_text(exact, PLAIN)
