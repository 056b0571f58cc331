"""Slack failing (HTTP 500, refused connections) and the bot restarted mid-job: notices late, never lost or doubled."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from storage.models import JobState
from tests.slack_env import (
    CH,
    all_told,
    card_shows,
    command,
    fake_config,
    job_ended,
    job_id_from_answer,
    running_bot,
    topics,
    wait_card,
)
from tests.slack_standin import SlackStandIn

STEP = re.compile(r"checkpoint at step (\d+)")


def checkpoint_steps(slack: SlackStandIn, card_ts: str) -> list[int]:
    return [int(n) for m in slack.thread(CH, card_ts) for n in STEP.findall(m.get("text", ""))]


@pytest.mark.slow  # waits out a Slack outage
async def test_notices_arrive_after_slack_recovers(
    slack: SlackStandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot")
    config = fake_config(tmp_path, steps=50, save_steps=5, step_s=0.1)
    async with running_bot(config, slack) as bot:
        await command(slack, bot, "llm gpu=0 out=output/o")
        job_id = await job_id_from_answer(slack)
        card = await wait_card(slack, job_id)
        await slack.refuse_connections()
        await slack.wait_for(
            lambda: caplog.text.count("not delivered (cannot connect") >= 2, 20, what="notices refused twice"
        )
        await slack.resume_connections()
        slack.fail_with(500)
        await slack.wait_for(
            lambda: caplog.text.count("not delivered (HTTP 500)") >= 2, 20, what="notices answered 500 twice"
        )
        slack.clear_faults()
        await slack.wait_for(lambda: job_ended(bot, job_id), 20, what="the job's end")
        await slack.wait_for(lambda: all_told(bot), 20, what="every notice delivered")
        await slack.wait_for(lambda: card_shows(slack, bot, job_id, JobState.SUCCEEDED), 10, what="the final card")
    names = topics(slack, card["ts"])
    assert names.count("job_started") == 1 and names.count("job_succeeded") == 1
    assert names[-2] == "job_succeeded" and names[-1].startswith("file:loss-")
    assert checkpoint_steps(slack, card["ts"]) == list(range(5, 55, 5))
    assert 1 <= len([c for c in slack.calls() if c.status == 500]) <= 10  # backed off, not hammering


@pytest.mark.slow  # restarts the bot mid-job
async def test_restart_mid_job_neither_loses_nor_repeats(slack: SlackStandIn, tmp_path: Path) -> None:
    config = fake_config(tmp_path, steps=40, save_steps=5, step_s=0.15)
    async with running_bot(config, slack) as bot:
        await command(slack, bot, "llm gpu=0 out=output/r")
        job_id = await job_id_from_answer(slack)
        card = await wait_card(slack, job_id)
        await slack.wait_for(lambda: "checkpoint" in topics(slack, card["ts"]), 10, what="a first checkpoint")
        job = await bot.runtime.store.require(job_id)
    assert job.run_dir is not None
    run_dir = Path(job.run_dir)
    # nobody is watching now; training goes on
    await slack.wait_for(lambda: (run_dir / "checkpoint-20").is_dir(), 20, what="training on without the bot")
    told_before = len(slack.thread(CH, card["ts"]))
    async with running_bot(config, slack) as bot:
        await slack.wait_for(lambda: job_ended(bot, job_id), 20, what="the job's end")
        await slack.wait_for(lambda: all_told(bot), 20, what="every notice delivered")
        await slack.wait_for(lambda: card_shows(slack, bot, job_id, JobState.SUCCEEDED), 10, what="the final card")
    assert len(slack.thread(CH, card["ts"])) > told_before
    assert slack.calls("conversations.replies")  # the first notice after the restart was looked for first
    names = topics(slack, card["ts"])
    assert names.count("job_started") == 1 and names.count("job_succeeded") == 1
    assert checkpoint_steps(slack, card["ts"]) == list(range(5, 45, 5))
    assert names[-1].startswith("file:loss-") and len(slack.uploads(completed=True)) == 1
    assert len([m for m in slack.messages(CH, top_level=True)]) == 2  # the card and the broadcast end
