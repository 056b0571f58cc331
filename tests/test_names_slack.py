"""Jobs named in Slack (the stand-in, tests/slack_standin/): `name=` at creation, the name escaped beside the id on
the card, in the thread and in every notice; `/train status <name>` and `/train list name=` find jobs by name;
`/train note` adds a note its owner may change and others may not."""

from __future__ import annotations

import json
from pathlib import Path

from tests.slack_env import (
    CH,
    all_told,
    answers,
    card_of,
    card_text,
    fake_config,
    job_ended,
    job_id_from_answer,
    running_bot,
    wait_card,
)
from tests.slack_standin import SlackStandIn, slack_shows

OWNER, OTHER = "U0ALICE", "U0BOB"
NAME = "<!channel> *lr* sweep & 训练"  # a mention, mrkdwn, an ampersand and CJK: shown as typed, inert


async def test_a_name_is_shown_escaped_on_the_card_in_the_thread_and_found_by_status_and_list(
    slack: SlackStandIn, tmp_path: Path
) -> None:
    async with running_bot(fake_config(tmp_path, steps=4, save_steps=2), slack, mode="socket") as bot:

        async def say(text: str, user: str = OWNER) -> str:
            before = len(answers(slack))
            await slack.wait_for_ack(await slack.push_slash_command(text, user_id=user))
            await slack.wait_for(lambda: len(answers(slack)) > before, 10, what=f"the answer to {text!r}")
            return slack_shows(answers(slack)[before])

        created = await say(f"llm gpu=0 out=output/named name='{NAME}'")
        job = await job_id_from_answer(slack, 0)
        assert f"“{NAME}”" in created  # the answer names it beside its id
        await say("llm gpu=1 out=output/plain-folder")
        plain = await job_id_from_answer(slack, 1)
        card = await wait_card(slack, job)
        await slack.wait_for(lambda: job_ended(bot, job), 60, what="the named job's end")
        await slack.wait_for(lambda: all_told(bot), 30, what="every notice told")

        shown = slack_shows(card_text(slack.message(CH, card["ts"]) or {}))
        assert f"`{job}`* “{NAME}”" in shown  # the id, and the name beside it
        thread = [
            json.dumps(m.get("blocks") or m.get("text"), ensure_ascii=False) for m in slack.thread(CH, card["ts"])
        ]
        told = [m for m in thread if "succeeded" in m or "started" in m]
        assert told and all(NAME.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in m for m in told)
        assert slack.live_tokens(allowed=[f"<@{OWNER}>"]) == []  # `<!channel>` in a name pings nobody, anywhere
        titles = [u.title or "" for u in slack.uploads(completed=True)]
        assert any(t.startswith(f"Loss curve of job {job} “&lt;!channel&gt;") for t in titles), titles  # its chart
        plain_card = card_of(slack, plain)
        assert plain_card is not None and "“plain-folder”" in card_text(plain_card)  # unnamed: its folder's name

        status = await say("status 'LR* SWEEP & 训练'")  # part of the name, in another case: the one job it finds
        assert f"`{job}`" in status and "succeeded" in status and NAME in status
        exact = await say("status plain-folder")
        assert f"`{plain}`" in exact and f"`{job}`" not in exact
        listed = await say("list name=SWEEP")
        assert f"`{job}`" in listed and f"`{plain}`" not in listed
        missing = await say("status nothing-like-it")
        assert "No job is named `nothing-like-it`" in missing

        refused = await say(f"note {job} lr 1e-4 was too high", user=OTHER)
        assert "only" in refused and "may note it" in refused
        noted = await say(f"note {job} lr 1e-4 <was> too high; don't", user=OWNER)
        assert "lr 1e-4 <was> too high; don't" in noted
        await slack.wait_for(
            lambda: "too high" in card_text(slack.message(CH, card["ts"]) or {}), 10, what="the note on the card"
        )
        assert "&lt;was&gt;" in card_text(slack.message(CH, card["ts"]) or {})
        assert "lr 1e-4 <was> too high; don't" in await say(f"status {job}")
        assert slack.live_tokens(allowed=[f"<@{OWNER}>", f"<@{OTHER}>"]) == []
