"""The card's buttons (signed block_actions) and who may press them; user groups for starting jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.slack.views import EXPORT_ACTION, STOP_ACTION
from storage.actors import User
from storage.models import ExportState, JobState
from tests.slack_env import (
    CH,
    all_told,
    answers,
    buttons,
    card_shows,
    command,
    fake_config,
    job_ended,
    job_id_from_answer,
    payload,
    press,
    running_bot,
    swift_config,
    topics,
    wait_card,
)
from tests.slack_standin import SlackStandIn

ACCESS = '[access]\nadmins = ["U0ADMIN"]\n'


async def test_stop_and_export_buttons(slack: SlackStandIn, tmp_path: Path) -> None:
    config = fake_config(tmp_path, steps=400, step_s=0.05, save_steps=2, sections=ACCESS)
    async with running_bot(config, slack) as bot:
        await command(slack, bot, "llm gpu=0 out=output/b", user="U0ALICE")
        job_id = await job_id_from_answer(slack)
        card = await wait_card(slack, job_id)
        assert buttons(card) == [STOP_ACTION]
        [stop] = [e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]]
        assert stop["value"] == job_id and stop["confirm"]["confirm"]["text"] == "Stop it"
        await slack.wait_for(lambda: "checkpoint" in topics(slack, card["ts"]), 15, what="a checkpoint")

        assert (await press(slack, bot, STOP_ACTION, job_id, card["ts"], user="U0BOB"))[0] == 200
        refusal = await slack.wait_for(lambda: answers(slack)[1:], what="the refusal")
        assert refusal[0].startswith("⚠️ only <@U0ALICE>") and "or an admin may stop it" in refusal[0]
        assert slack.responses()[-1].body.get("response_type") == "ephemeral"
        assert (await bot.runtime.store.require(job_id)).state is JobState.RUNNING

        assert (await press(slack, bot, STOP_ACTION, job_id, card["ts"], user="U0ADMIN"))[0] == 200
        await slack.wait_for(lambda: job_ended(bot, job_id), 20, what="the stop")
        await slack.wait_for(lambda: all_told(bot), 10, what="the notices")
        await slack.wait_for(lambda: card_shows(slack, bot, job_id, JobState.STOPPED), 10, what="a stopped card")
        assert "Stopping job" in answers(slack)[2]
        [end] = [m for m in slack.thread(CH, card["ts"]) if payload(m).get("topic") == "job_stopped"]
        assert end["reply_broadcast"] and "stopped by <@U0ADMIN>" in end["text"]
        final = slack.message(CH, card["ts"]) or {}
        assert buttons(final) == [EXPORT_ACTION]

        assert (await press(slack, bot, EXPORT_ACTION, job_id, card["ts"], user="U0BOB"))[0] == 200
        await slack.wait_for(lambda: len(answers(slack)) == 4, what="the export refusal")
        assert "may export it" in answers(slack)[3]
        assert (await press(slack, bot, EXPORT_ACTION, job_id, card["ts"], user="U0ALICE"))[0] == 200

        async def exported() -> bool:
            return (await bot.runtime.store.require(job_id)).export_state is ExportState.EXPORTED

        await slack.wait_for(exported, 20, what="the export")
        await slack.wait_for(lambda: all_told(bot), 10, what="the export notices")
    names = topics(slack, card["ts"])
    assert names[-2:] == ["export_started", "export_succeeded"]
    broadcast = [m for m in slack.thread(CH, card["ts"]) if m.get("reply_broadcast")]
    assert [payload(m)["topic"] for m in broadcast] == ["job_stopped", "export_started", "export_succeeded"]


async def test_a_buttons_value_is_a_job_id_never_a_command(slack: SlackStandIn, tmp_path: Path) -> None:
    """The card's button sends a typed command: its value is looked up as an id, byte for byte, never parsed."""
    async with running_bot(fake_config(tmp_path, steps=400, step_s=0.05), slack) as bot:
        await command(slack, bot, "llm gpu=0 out=output/v", user="U0ALICE")
        job_id = await job_id_from_answer(slack)
        card = await wait_card(slack, job_id)
        value = f"{job_id} logs"  # as text, `stop <id> logs` would parse (or be refused) as another command
        assert (await press(slack, bot, STOP_ACTION, value, card["ts"], user="U0ALICE"))[0] == 200
        refusal = await slack.wait_for(lambda: answers(slack)[1:], what="the refusal")
        assert refusal[0].startswith(f"⚠️ there is no job `{value}`")
        assert (await bot.runtime.store.require(job_id)).state in (JobState.QUEUED, JobState.STARTING, JobState.RUNNING)
        assert (await press(slack, bot, STOP_ACTION, job_id, card["ts"], user="U0ALICE"))[0] == 200
        await slack.wait_for(lambda: job_ended(bot, job_id), 20, what="the stop by the real id")


async def test_user_groups_may_start_jobs(slack: SlackStandIn, tmp_path: Path) -> None:
    slack.add_usergroup("S0MLTEAM", "ml-team", ["U0CAROL"])
    config = fake_config(tmp_path, sections='[access]\ngroups = ["ml-team"]\n')
    async with running_bot(config, slack) as bot:
        await command(slack, bot, "llm gpu=0 out=output/g1", user="U0DAVE")
        await slack.wait_for(lambda: answers(slack), what="the refusal")
        assert answers(slack)[0].startswith("⚠️ you may not start jobs")
        await command(slack, bot, "llm gpu=0 out=output/g2", user="U0CAROL")
        job_id = await job_id_from_answer(slack)
        await slack.wait_for(lambda: job_ended(bot, job_id), 20, what="Carol's job")
        await command(slack, bot, "list", user="U0DAVE")  # reading is for everyone
        await slack.wait_for(lambda: len(answers(slack)) == 3, what="the list")
        assert job_id in answers(slack)[2]
    assert len(slack.calls("usergroups.list")) == 1  # cached


async def test_logs_full_goes_to_the_thread(slack: SlackStandIn, tmp_path: Path) -> None:
    async with running_bot(fake_config(tmp_path), slack) as bot:
        await command(slack, bot, "llm gpu=0 out=output/l")
        job_id = await job_id_from_answer(slack)
        await slack.wait_for(lambda: job_ended(bot, job_id), 20, what="the job")
        card = await wait_card(slack, job_id)
        await command(slack, bot, f"logs {job_id}")
        await slack.wait_for(lambda: len(answers(slack)) == 2, what="the log tail")
        assert answers(slack)[1].startswith("Last 40 lines of") and "```" in answers(slack)[1]
        await command(slack, bot, f"logs {job_id} full")
        await slack.wait_for(lambda: len(answers(slack)) == 3, what="the upload's answer")
        assert "is in its thread" in answers(slack)[2]
    [log] = [u for u in slack.uploads(completed=True) if u.filename.endswith(".log")]
    assert log.thread_ts == card["ts"] and log.content is not None
    assert f"job {job_id} train".encode() in log.content


@pytest.mark.swift
async def test_stop_button_stops_a_real_swift_job(
    slack: SlackStandIn, tmp_path: Path, tiny_llm: dict[str, Any]
) -> None:
    config = swift_config(tmp_path, tiny_llm, extra={"num_train_epochs": 20}, sections=ACCESS)
    async with running_bot(config, slack) as bot:
        await command(slack, bot, "llm gpu=cpu out=output/long", user="U0ALICE")
        job_id = await job_id_from_answer(slack)
        card = await wait_card(slack, job_id)
        await slack.wait_for(lambda: "checkpoint" in topics(slack, card["ts"]), 90, what="a first checkpoint")
        assert (await press(slack, bot, STOP_ACTION, job_id, card["ts"], user="U0MALLORY"))[0] == 200
        await slack.wait_for(lambda: answers(slack)[1:], what="the refusal")
        assert "only <@U0ALICE>" in answers(slack)[1]
        assert (await bot.runtime.store.require(job_id)).state is JobState.RUNNING
        assert (await press(slack, bot, STOP_ACTION, job_id, card["ts"], user="U0ALICE"))[0] == 200
        await slack.wait_for(lambda: job_ended(bot, job_id), 60, what="swift to stop")
        await slack.wait_for(lambda: all_told(bot), 20, what="the notices")
        await slack.wait_for(lambda: card_shows(slack, bot, job_id, JobState.STOPPED), 10, what="a stopped card")
        job = await bot.runtime.store.require(job_id)
    assert job.state is JobState.STOPPED and job.stopped_by == User("U0ALICE")
    assert job.progress.step is not None and job.progress.max_steps and job.progress.step < job.progress.max_steps
    names = topics(slack, card["ts"])
    assert "job_stopping" in names and names.index("job_stopping") < names.index("job_stopped")
    assert names[-1].startswith("file:loss-")
