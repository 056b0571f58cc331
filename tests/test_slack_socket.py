"""The bot in Socket Mode: envelopes over the stand-in's websocket, acks back over it, the Web API over HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from storage.models import JobState
from tests.slack_env import (
    CH,
    all_told,
    answers,
    card_shows,
    fake_config,
    job_ended,
    job_id_from_answer,
    running_bot,
    swift_config,
    topics,
    wait_card,
)
from tests.slack_standin import SlackStandIn


async def test_commands_over_socket_mode(slack: SlackStandIn, tmp_path: Path) -> None:
    async with running_bot(fake_config(tmp_path), slack, mode="socket"):
        assert [c.token for c in slack.calls("apps.connections.open")] == ["xapp-1-app"]
        started = time.monotonic()
        ack = await slack.wait_for_ack(await slack.push_slash_command("help"))
        assert time.monotonic() - started < 1.0
        assert not ack.get("payload")  # acked empty: the answer follows through response_url
        [answer] = await slack.wait_for(lambda: answers(slack), what="the help text")
        assert "/train llm" in answer
        await slack.send_disconnect()  # Slack rotates connections now and then
        await slack.wait_for(lambda: slack.socket_connects == 2, what="a reconnect")
        await slack.wait_for_socket()
        await slack.wait_for_ack(await slack.push_slash_command("list"))
        await slack.wait_for(lambda: len(answers(slack)) == 2, what="an answer after the reconnect")


async def test_app_home_dashboard(slack: SlackStandIn, tmp_path: Path) -> None:
    async with running_bot(fake_config(tmp_path, steps=600, step_s=0.1), slack, mode="socket") as bot:
        await slack.wait_for_ack(await slack.push_slash_command("llm gpu=2 out=output/home"))
        job_id = await job_id_from_answer(slack)
        await wait_card(slack, job_id)
        await slack.wait_for_ack(await slack.push_event({"type": "app_home_opened", "user": "U0ALICE", "tab": "home"}))
        [home] = await slack.wait_for(lambda: slack.views("U0ALICE"), what="the home tab")
        text = str(home["view"]["blocks"])
        assert f"`{job_id}`" in text and "GPU 2" in text and f"job `{job_id}`" in text  # the job, and its GPU
        assert "*GPU 0*" in text and "free" in text
        told = len(answers(slack))
        await slack.wait_for_ack(await slack.push_slash_command(f"stop {job_id}"))
        [said] = await slack.wait_for(lambda: answers(slack)[told:], 10, what="the stop's answer")
        assert said.startswith(f"Stopping job `{job_id}`"), said
        await slack.wait_for(lambda: job_ended(bot, job_id), 20, what="the stop")
        assert (await bot.runtime.store.require(job_id)).state is JobState.STOPPED


@pytest.mark.swift
async def test_real_swift_job_over_socket_mode(slack: SlackStandIn, tmp_path: Path, tiny_llm: dict[str, Any]) -> None:
    config = swift_config(tmp_path, tiny_llm)
    async with running_bot(config, slack, mode="socket") as bot:
        started = time.monotonic()
        ack = await slack.wait_for_ack(await slack.push_slash_command("llm gpu=cpu out=output/sock"))
        assert time.monotonic() - started < 1.0 and not ack.get("payload")
        job_id = await job_id_from_answer(slack)
        card = await wait_card(slack, job_id)
        await slack.wait_for(lambda: job_ended(bot, job_id), 120, what="the end of the swift run")
        await slack.wait_for(lambda: all_told(bot), 30, what="every notice delivered")
        await slack.wait_for(lambda: card_shows(slack, bot, job_id, JobState.SUCCEEDED), 10, what="final card")
    names = topics(slack, card["ts"])
    # the card's first reply says what the speed profile changed (the direct start), then the start
    assert names[:2] == ["job_created", "job_started"] and "checkpoint" in names
    assert names[-2:] == ["job_succeeded", names[-1]] and names[-1].startswith("file:loss-")
    assert all(m["thread_ts"] == card["ts"] for m in slack.thread(CH, card["ts"]))
    assert [u.thread_ts for u in slack.uploads(completed=True)] == [card["ts"]]
