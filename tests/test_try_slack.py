"""`/train try` in Slack: the answer in the job's thread, one message updated in place as it is generated (within
chat.update's limit), the model's text inert (plain_text only), cut at a limit with the whole answer as a file, and
replies in the thread going on with the conversation. The last test runs the real swift on the tiny model against
the Slack stand-in (Socket Mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.slack.try_thread import EVENT_TYPE
from bot.slack.try_view import ANSWER_LIMIT, AnswerView, blocks, whole_answer
from tests.slack_env import CH, all_told, answers, job_ended, job_id_from_answer, running_bot, swift_config, wait_card
from tests.slack_standin import LIVE_TOKEN, SlackStandIn, mrkdwn_texts
from tests.test_slack_escaping import HOSTILE

OWNER = "U0ALICE"


def plain_texts(shown: list[dict[str, Any]]) -> list[str]:
    out = []
    for block in shown:
        for obj in [block.get("text") or {}, *(block.get("fields") or [])]:
            if obj.get("type") == "plain_text":
                out.append(str(obj["text"]))
    return out


@pytest.mark.parametrize("hostile", HOSTILE)
def test_the_models_text_and_the_question_are_shown_as_typed_and_never_live(hostile: str) -> None:
    view = AnswerView("k3x9q", OWNER, f"ask {hostile}", texts={(0, "tuned"): f"answer {hostile}"})
    shown = blocks(view)
    assert not [t for _, t in mrkdwn_texts(shown) if LIVE_TOKEN.findall(t.replace(f"<@{OWNER}>", ""))]
    assert f"› ask {hostile}" in plain_texts(shown) and f"answer {hostile}" in plain_texts(shown)
    check = AnswerView("k3x9q", OWNER, None, questions={0: hostile}, texts={(0, "tuned"): hostile, (0, "base"): "x"})
    assert not [t for _, t in mrkdwn_texts(blocks(check)) if LIVE_TOKEN.findall(t.replace(f"<@{OWNER}>", ""))]
    assert f"fine-tuned:\n{hostile}" in plain_texts(blocks(check))


def test_a_long_answer_is_cut_in_the_message_and_whole_in_the_file() -> None:
    answer = "word " * 2000
    view = AnswerView("k3x9q", OWNER, "a long story", texts={(0, "tuned"): answer})
    shown = plain_texts(blocks(view))[1]
    assert view.cut() and len(shown) < 3000 and shown.endswith("(cut here: the whole answer is in the file)")
    assert shown.startswith(answer[:ANSWER_LIMIT].rstrip()) and answer in whole_answer(view)


def try_messages(slack: SlackStandIn, card_ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.thread(CH, card_ts) if (m.get("metadata") or {}).get("event_type") == EVENT_TYPE]


def answered(message: dict[str, Any]) -> bool:
    return "✅ answered" in str(message.get("blocks"))


@pytest.mark.swift
async def test_a_thread_conversation_of_two_turns_with_a_long_answer_cut_into_a_file(
    slack: SlackStandIn, tmp_path: Path, tiny_llm: dict[str, Any]
) -> None:
    config = swift_config(tmp_path, tiny_llm)
    async with running_bot(config, slack, mode="socket") as bot:
        await slack.wait_for_ack(await slack.push_slash_command("llm gpu=cpu out=output/talk", user_id=OWNER))
        job_id = await job_id_from_answer(slack)
        card = await wait_card(slack, job_id)
        await slack.wait_for(lambda: job_ended(bot, job_id), 180, what="the training to end")
        await slack.wait_for(lambda: all_told(bot), 30, what="every notice delivered")

        question = "Who are you? <!channel> *bold* `x`"
        await slack.wait_for_ack(await slack.push_slash_command(f"try {job_id} {question}", user_id=OWNER))
        await slack.wait_for(
            lambda: any("the answer comes in the job's thread" in a for a in answers(slack)),
            10,
            what="the ephemeral answer",
        )
        [first] = await slack.wait_for(lambda: try_messages(slack, card["ts"]) or None, 20, what="the answer's post")
        done = await slack.wait_for(
            lambda: (m := slack.message(CH, first["ts"])) and answered(m) and m, 180, what="the answer to be whole"
        )
        assert f"› {question}" in plain_texts(done["blocks"])  # shown as typed, in plain text
        assert any(f"asked job `{job_id}` “talk”'s model" in t for _, t in mrkdwn_texts(done))  # id and name
        assert not [t for _, t in mrkdwn_texts(done) if LIVE_TOKEN.findall(t.replace(f"<@{OWNER}>", ""))]
        assert slack.updates_of(first["ts"])  # one message, updated in place
        assert "first token" in str(done["blocks"])

        # turn 2: a reply in the thread mentioning the bot goes on with the conversation
        slack.seed_message(CH, f"<@{slack.bot_user_id}> and what do you do?", user=OWNER, thread_ts=card["ts"])
        await slack.wait_for_ack(
            await slack.push_event(
                {
                    "type": "app_mention",
                    "user": OWNER,
                    "channel": CH,
                    "thread_ts": card["ts"],
                    "ts": "1.000002",
                    "text": f"<@{slack.bot_user_id}> and what do you do?",
                }
            )
        )
        second = await slack.wait_for(
            lambda: (
                (ms := try_messages(slack, card["ts"]))[1:]
                and answered(slack.message(CH, ms[1]["ts"]) or {})
                and slack.message(CH, ms[1]["ts"])
            ),
            120,
            what="turn 2",
        )
        assert "(turn 2 of the conversation)" in str(second["blocks"])
        assert "› and what do you do?" in plain_texts(second["blocks"])

        async def kept_two_turns() -> bool:
            kept = await bot.runtime.store.slack_try_thread(CH, card["ts"])
            return kept is not None and [role for role, _ in kept.messages].count("user") == 2

        await slack.wait_for(kept_two_turns, 30, what="turn 2 kept in the store")

    # the bot restarts: the thread's conversation was kept, so the next reply is its turn 3, not a new one
    async with running_bot(config, slack, mode="socket") as bot:
        # a reply that neither mentions the bot nor starts with `try` is left alone; `try ...` is turn 3, long
        await slack.wait_for_ack(
            await slack.push_event(
                {
                    "type": "message",
                    "user": OWNER,
                    "channel": CH,
                    "thread_ts": card["ts"],
                    "ts": "1.000003",
                    "text": "thanks, nice",
                }
            )
        )
        await slack.wait_for_ack(
            await slack.push_event(
                {
                    "type": "message",
                    "user": OWNER,
                    "channel": CH,
                    "thread_ts": card["ts"],
                    "ts": "1.000004",
                    "text": "try tell me a long story",
                }
            )
        )
        third = await slack.wait_for(
            lambda: (
                (ms := try_messages(slack, card["ts"]))[2:]
                and answered(slack.message(CH, ms[2]["ts"]) or {})
                and slack.message(CH, ms[2]["ts"])
            ),
            120,
            what="turn 3",
        )
        assert len(try_messages(slack, card["ts"])) == 3
        assert "(turn 3 of the conversation)" in str(third["blocks"])

        await slack.wait_for_ack(
            await slack.push_slash_command(f"try {job_id} max_tokens=1500 a long story", user_id=OWNER)
        )
        fourth = await slack.wait_for(
            lambda: (
                (ms := try_messages(slack, card["ts"]))[3:]
                and answered(slack.message(CH, ms[3]["ts"]) or {})
                and slack.message(CH, ms[3]["ts"])
            ),
            180,
            what="a long answer",
        )
        shown = plain_texts(fourth["blocks"])[1]
        assert shown.endswith("(cut here: the whole answer is in the file)")
        [upload] = await slack.wait_for(
            lambda: [u for u in slack.uploads(completed=True) if u.filename.startswith("answer-")] or None,
            30,
            what="the file",
        )
        whole = (upload.content or b"").decode()
        assert (
            upload.thread_ts == card["ts"]
            and shown.removesuffix(" … (cut here: the whole answer is in the file)") in whole
            and len(whole) > len(shown)
        )
        assert not slack.rate_limited("chat.update")
