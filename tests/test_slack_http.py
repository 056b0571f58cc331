"""The bot in HTTP mode: signed requests from the stand-in to Bolt's aiohttp server, real jobs, real SQLite."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bot.slack.app import QUIET_AFTER_S
from storage.models import JobState
from tests.slack_env import (
    CH,
    SECRET,
    all_told,
    answers,
    buttons,
    card_of,
    card_shows,
    card_text,
    command,
    fake_config,
    job_ended,
    job_id_from_answer,
    payload,
    running_bot,
    swift_config,
    topics,
    wait_card,
)
from tests.slack_signing import encode_slash_command
from tests.slack_standin import SlackStandIn


async def test_signatures_are_checked(slack: SlackStandIn, tmp_path: Path) -> None:
    async with running_bot(fake_config(tmp_path), slack) as bot:
        body, headers = slack.signed_slash_command(secret="not-the-secret", text="list")
        assert (await slack.post_to_app(bot.url, body, headers))[0] == 401
        body, headers = slack.signed_slash_command(text="list", timestamp=int(time.time()) - 600)
        assert (await slack.post_to_app(bot.url, body, headers))[0] == 401
        fields = slack.slash_command_payload("list")
        body, headers = encode_slash_command(SECRET, fields)
        assert (await slack.post_to_app(bot.url, body + "&extra=1", headers))[0] == 401  # body changed after signing
        assert (await command(slack, bot, "list"))[0] == 200
        [answer] = await slack.wait_for(lambda: answers(slack), what="the answer to list")
        assert answer == "jobs: none."
        assert slack.messages() == []


async def test_answers_are_ephemeral_and_acks_fast(slack: SlackStandIn, tmp_path: Path) -> None:
    async with running_bot(fake_config(tmp_path), slack) as bot:
        for i, text in enumerate(["help", "llm gpu=7 out=output/x", "status zzzzz", "gpus"]):
            started = time.monotonic()
            status, body = await command(slack, bot, text)
            assert (status, body) == (200, "")
            assert time.monotonic() - started < 1.0
            await slack.wait_for(lambda n=i: len(answers(slack)) > n, what=f"the answer to {text}")
        help_, bad_gpu, unknown, gpus = answers(slack)
        assert "/train llm" in help_ and "⚠️" not in help_
        assert bad_gpu.startswith("⚠️") and "GPU 7" in bad_gpu
        assert unknown.startswith("⚠️") and "no job `zzzzz`" in unknown
        assert "GPU 0" in gpus and "free" in gpus
        assert all(r.body.get("response_type") == "ephemeral" for r in slack.responses())
        assert slack.messages() == [] and not slack.ephemerals()


async def test_work_waits_until_no_request_has_been_answered_for_a_moment(slack: SlackStandIn, tmp_path: Path) -> None:
    """Acks first: a command's work does not start while another request is being answered, nor until
    QUIET_AFTER_S has passed with none (a burst's requests come closer together than that)."""
    async with running_bot(fake_config(tmp_path), slack) as bot:
        ctx, loop = bot.context, asyncio.get_running_loop()
        started: list[float] = []

        async def work() -> None:
            started.append(loop.time())

        with ctx.answering():  # a request being answered, held open
            ctx.after_ack(work())
            await asyncio.sleep(0.1)  # what must not happen meanwhile: no condition to wait on
            assert not started, "work started while a request was being answered"
        with ctx.answering():  # the next request of a burst, within the quiet time
            pass
        last_answered = loop.time()
        await slack.wait_for(lambda: started, 5, what="the work")
        assert started[0] - last_answered >= QUIET_AFTER_S * 0.9  # the loop's clock has ~1 ms resolution


async def test_job_card_and_thread_with_fake_trainer(slack: SlackStandIn, tmp_path: Path) -> None:
    """The whole story, quickly (tests/fake_swift.py): the same checks as the real-swift test below."""
    async with running_bot(fake_config(tmp_path), slack) as bot:
        assert (await command(slack, bot, "llm gpu=1 out=output/fast"))[0] == 200
        job_id = await job_id_from_answer(slack)
        assert "card is in the channel" in answers(slack)[0]
        await slack.wait_for(lambda: job_ended(bot, job_id), 20, what="the job's end")
        await slack.wait_for(lambda: all_told(bot), 20, what="every notice delivered")
        await slack.wait_for(lambda: card_shows(slack, bot, job_id, JobState.SUCCEEDED), 10, what="final card")
        card = card_of(slack, job_id)
        assert card is not None
        thread = topics(slack, card["ts"])
        chart = f"file:loss-{job_id}-{thread_notice_id(slack, card['ts'], 'job_succeeded')}.png"
        assert thread == ["job_started", "checkpoint", "eval", "checkpoint", "job_succeeded", chart], thread
        assert buttons(slack.message(CH, card["ts"]) or {}) == ["export_job"]


def thread_notice_id(slack: SlackStandIn, ts: str, topic: str) -> int:
    [m] = [m for m in slack.thread(CH, ts) if payload(m).get("topic") == topic]
    return int(payload(m)["notice_id"])


@pytest.mark.swift
async def test_real_swift_job_over_http(slack: SlackStandIn, tmp_path: Path, tiny_llm: dict[str, Any]) -> None:
    config = swift_config(tmp_path, tiny_llm)
    async with running_bot(config, slack) as bot:
        started = time.monotonic()
        status, body = await command(slack, bot, "llm gpu=cpu out=output/x")
        assert (status, body) == (200, "") and time.monotonic() - started < 1.0
        job_id = await job_id_from_answer(slack)
        card = await wait_card(slack, job_id)
        await slack.wait_for(lambda: job_ended(bot, job_id), 120, what="the end of the swift run")
        await slack.wait_for(lambda: all_told(bot), 30, what="every notice delivered")
        await slack.wait_for(lambda: card_shows(slack, bot, job_id, JobState.SUCCEEDED), 10, what="final card")
        job = await bot.runtime.store.require(job_id)
    assert job.state is JobState.SUCCEEDED
    thread = slack.thread(CH, card["ts"])
    names = topics(slack, card["ts"])
    # the card's first reply says what the speed profile changed: here, the direct start of swift's sft script
    assert names[0] == "job_created" and "starts training directly" in thread[0]["text"]
    # one process on the CPU: swift's sft script started directly (runner/swift_entry.py), not via `swift sft`
    assert names[1] == "job_started" and "runner/swift_entry.py sft --model" in thread[1]["blocks"][1]["text"]["text"]
    assert "--output_dir" in thread[1]["blocks"][1]["text"]["text"]
    assert names.count("checkpoint") >= 2 and "eval" in names
    assert names[-2] == "job_succeeded" and names[-1].startswith(f"file:loss-{job_id}-")
    # one reply may carry several minor milestones, so find the end notice's own message
    [end] = [m for m in thread if "job_succeeded" in payload(m).get("topics", [])]
    assert end.get("reply_broadcast") is True
    assert [m["thread_ts"] for m in thread] == [card["ts"]] * len(thread)
    assert [m["text"] for m in slack.messages(CH, top_level=True)][1].startswith(f"✅ job `{job_id}` “x” succeeded")
    [upload] = slack.uploads(completed=True)
    assert upload.thread_ts == card["ts"] and upload.channel == CH
    assert upload.content is not None and upload.content.startswith(b"\x89PNG")
    final = slack.message(CH, card["ts"]) or {}
    assert "succeeded" in card_text(final) and "final loss" in card_text(final)
    assert buttons(final) == ["export_job"]
    assert slack.rate_limited() == []
