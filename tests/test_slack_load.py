"""20 jobs started at once in one channel, against the stand-in's Slack limits (tests/fake_swift.py): the bot paces
itself (never a 429) and still shows each end on its card within 10 s (issue 11 part 3). Slow: about a minute."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from storage.models import JobState
from tests.slack_env import (
    CH,
    all_told,
    answers,
    card_of,
    card_text,
    command,
    fake_config,
    job_ended,
    payload,
    running_bot,
    standin,
    topics,
)
from tests.slack_standin import Call, SlackStandIn

JOBS = 20
FINAL_WITHIN_S = 10.0
pytestmark = pytest.mark.slow


def retry_after_honoured(slack: SlackStandIn) -> list[str]:
    """Each 429 is the last call of its method (and channel) until its Retry-After has passed."""
    problems = []
    for hit in slack.rate_limited():
        calls = [c for c in slack.calls(hit.method) if not hit.key or c.params.get("channel") == hit.key]
        i = next(i for i, c in enumerate(calls) if c.status == 429 and c.time >= hit.time)
        if i + 1 < len(calls) and calls[i + 1].time < calls[i].time + hit.retry_after - 0.05:
            problems.append(
                f"{hit.method} {hit.key}: called {calls[i + 1].time - calls[i].time:.2f}s after a 429 "
                f"with Retry-After {hit.retry_after}"
            )
    return problems


def drew(call: Call, card_ts: str) -> bool:
    """Did this call draw the card (posted it, or updated it)?"""
    if call.method == "chat.update":
        return call.params.get("ts") == card_ts
    return call.method == "chat.postMessage" and isinstance(call.response, dict) and call.response.get("ts") == card_ts


async def test_twenty_jobs_in_one_channel(tmp_path: Path) -> None:
    config = fake_config(tmp_path, gpus=JOBS, steps=60, save_steps=100, step_s=0.25)
    async with standin() as slack:
        async with running_bot(config, slack) as bot:
            acks = await asyncio.gather(
                *(command(slack, bot, f"llm gpu={i} out=output/j{i}", user=f"U0USER{i:02d}") for i in range(JOBS))
            )
            assert acks == [(200, "")] * JOBS
            await slack.wait_for(lambda: len(answers(slack)) == JOBS, 10, what="20 answers")
            jobs = [j.id for j in await bot.runtime.store.list_jobs()]
            assert len(jobs) == JOBS

            async def all_ended() -> bool:
                return all([await job_ended(bot, j) for j in jobs])

            await slack.wait_for(all_ended, 60, what="every job's end")
            await slack.wait_for(lambda: all_told(bot), 150, what="every notice delivered")

            def finals() -> bool:
                cards = [card_of(slack, j) for j in jobs]
                return all(
                    c is not None and f"is *{JobState.SUCCEEDED}*" in card_text(slack.message(CH, c["ts"]) or {})
                    for c in cards
                )

            await slack.wait_for(finals, 90, what="every card in its final state")
            ended = {j.id: j for j in await bot.runtime.store.list_jobs()}
        assert {j.state for j in ended.values()} == {JobState.SUCCEEDED}
    assert [(h.method, h.key) for h in slack.rate_limited()] == []
    assert retry_after_honoured(slack) == []
    late = {}
    for job_id, job in ended.items():
        card = card_of(slack, job_id)
        assert card is not None and job.finished_at is not None
        final = min(
            c.time
            for c in slack.calls()
            if c.status == 200
            and drew(c, card["ts"])
            and f"is *{JobState.SUCCEEDED}*" in json.dumps(c.params.get("blocks"), ensure_ascii=False)
        )
        if final - job.finished_at > FINAL_WITHIN_S:
            late[job_id] = round(final - job.finished_at, 1)
    assert late == {}, f"cards final more than {FINAL_WITHIN_S} s after their job ended: {late}"
    for job_id in jobs:
        card = card_of(slack, job_id)
        assert card is not None
        names = topics(slack, card["ts"])
        ends = [n for n in names if n == "job_succeeded"]
        assert ends == ["job_succeeded"], (job_id, names)
        assert names[0] == "job_started" and names[-1].startswith(f"file:loss-{job_id}-"), names
        assert names.index("checkpoint") < names.index("job_succeeded")
    broadcast = [payload(m)["job_id"] for m in slack.messages(CH, top_level=True) if m.get("reply_broadcast")]
    assert sorted(broadcast) == sorted(jobs)
    assert len(slack.messages(CH, top_level=True)) == 2 * JOBS  # the cards and the broadcast ends
