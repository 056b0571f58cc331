"""Issue 11, part 2: text a user typed (or a job's log) can't ping the channel or dress a link, in any message kind.

A table of hostile strings goes through output folders, typed commands and log lines (tests/fake_swift.py prints
them), and every payload the bot sends to the Slack stand-in is searched for a live `<…>` token
(tests/slack_standin/ `live_tokens`): the job card (post and updates), thread replies, end and export notices,
answers to commands, errors, the Home view, the Stop confirmation and the loss curve's file title.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from bot.slack import views
from bot.slack.bot import SlackBot
from bot.words.format import PLAIN, SLACK
from storage.models import JobState
from tests.conftest import VENV_BIN
from tests.slack_env import (
    CH,
    all_told,
    answers,
    card_of,
    fake_config,
    job_ended,
    job_id_from_answer,
    running_bot,
    topics,
    wait_card,
)
from tests.slack_standin import LIVE_TOKEN, SlackStandIn, slack_shows

OWNER = "U0ALICE"
HOSTILE = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U123>",
    "<@W123|boss>",
    "<#C123>",
    "<#C123|general>",
    "<!subteam^S123>",
    "<!subteam^S123|@oncall>",
    "<https://evil.example|click>",
    "<http://evil.example>",
    "<mailto:a@b.example|x>",
    "&lt;!channel&gt;",
    "&amp;",
    "<<!channel>>",
    "<!channel",
    "!channel>",
    "＜!channel＞",
    "‹!here›",
    "<!date^1392734382^{date}|x>",
    "a&b<c>d",
    "*bold*_x_~s~",
    "`<!here>`",
    "```<!channel>```",
    "tab\t<!here>",
    "line\n<!channel>",
    "<!channel>" * 40,
]
PATH_SAFE = [h for h in HOSTILE if not any(c in h for c in " \t\n`'\",")]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_slack_format_leaves_no_live_token_and_shows_the_text(hostile: str) -> None:
    for written in (SLACK.text(hostile), SLACK.code(hostile), SLACK.block(hostile)):
        assert not LIVE_TOKEN.findall(written)
    assert slack_shows(SLACK.text(hostile)) == hostile  # the reader sees what was typed
    assert SLACK.code(hostile).count("`") == 2 and SLACK.block(hostile).count("```") == 2  # can't break out
    assert PLAIN.text(hostile) == hostile and PLAIN.code(hostile) == hostile  # the console: as typed, no mrkdwn


def test_enough_hostile_strings() -> None:
    assert len(HOSTILE) >= 20 and len(PATH_SAFE) >= 15


SHELL_SIGN = re.compile(r";|&&|\||`|\$\(")


async def test_typed_text_in_answers_and_errors_stays_inert(slack: SlackStandIn, tmp_path: Path) -> None:
    """Dry runs echo the output folder and overrides; rejections echo what was typed."""
    async with running_bot(fake_config(tmp_path), slack, mode="socket"):
        typed = [f"llm gpu=0 out=output/x{h} --dry-run" for h in PATH_SAFE]
        typed += [f"vlm gpu=0 out=output/v max_pixels={h} --dry-run" for h in PATH_SAFE[:5]]
        typed += [
            "status <!channel>",
            "stop <@U123>",
            "llm gpu=<!here> out=output/a",
            "logs <#C123> 5",
            "llm gpu=0 out=/etc/<!channel>",
            "<https://evil.example|click>",
            "list <!everyone>",
        ]
        for text in typed:
            await slack.wait_for_ack(await slack.push_slash_command(text, user_id=OWNER))
        await slack.wait_for(lambda: len(answers(slack)) == len(typed), 30, what="an answer to each")
        said = answers(slack)
    assert slack.live_tokens() == []
    shown = "\n".join(slack_shows(a) for a in said)
    for hostile in PATH_SAFE:  # echoed, readable as typed (a folder's `//` is normalised away, `&` decoded,
        # a 400-character name refused, a shell's sign like `|` refused as such, quoting the text before it)
        if "//" not in hostile and "&" not in hostile and len(hostile) < 200 and not SHELL_SIGN.search(hostile):
            assert hostile in shown, hostile
    assert "<!channel>" in shown and "<@U123>" in shown


@pytest.mark.slow  # every message kind, end to end
async def test_hostile_folders_and_log_lines_through_every_message_kind(slack: SlackStandIn, tmp_path: Path) -> None:
    say = tmp_path / "say.txt"
    say.write_text("\n".join(h.replace("\n", " ") for h in HOSTILE) + "\n")
    config = fake_config(
        tmp_path,
        steps=20,
        save_steps=5,
        eval_steps=10,
        step_s=0.2,
        env={"FAKE_SWIFT_SAY_FILE": str(say), "FAKE_SWIFT_FAIL_IN": "fail"},
    )
    async with running_bot(config, slack, mode="socket") as bot:

        async def run(text: str) -> None:
            await slack.wait_for_ack(await slack.push_slash_command(text, user_id=OWNER))

        await run("llm gpu=0 out=output/<!channel>")
        ok = await job_id_from_answer(slack, 0)
        await run("llm gpu=1 out=output/fail<@U123>")
        failed = await job_id_from_answer(slack, 1)
        await run("llm gpu=2 out=output/<#C123>&<!here>")
        stopped = await job_id_from_answer(slack, 2)
        card = await wait_card(slack, stopped)
        await slack.wait_for_ack(await slack.push_block_action(views.STOP_ACTION, stopped, OWNER, CH, card["ts"]))
        await slack.wait_for(lambda: job_ended(bot, stopped), 60, what="the stop")
        await slack.wait_for(lambda: job_ended(bot, ok), 60, what="the first job's end")
        await slack.wait_for(lambda: job_ended(bot, failed), 60, what="the failing job's end")
        ok_card = card_of(slack, ok)
        assert ok_card is not None
        await slack.wait_for_ack(await slack.push_block_action(views.EXPORT_ACTION, ok, OWNER, CH, ok_card["ts"]))
        await slack.wait_for(lambda: _exported(bot, ok), 60, what="the export")
        await slack.wait_for_ack(await slack.push_event({"type": "app_home_opened", "user": OWNER, "tab": "home"}))
        await slack.wait_for(lambda: slack.views(OWNER), what="the home tab (a failed job's cause in it)")
        for asked in (f"status {ok}", f"show {failed}", f"logs {failed} 60", "list", "status", "gpus"):
            await run(asked)
        await slack.wait_for(lambda: all_told(bot), 60, what="every notice delivered")
        await slack.wait_for(lambda: len(answers(slack)) >= 9, 30, what="the answers")
        failed_card = card_of(slack, failed)
        assert failed_card is not None
        await slack.wait_for(lambda: "file:" in " ".join(topics(slack, ok_card["ts"])), 30, what="the loss curve")
    told = {t for c in (ok_card, failed_card, card) for t in topics(slack, c["ts"])}
    assert {
        "job_started",
        "checkpoint",
        "eval",
        "job_succeeded",
        "job_failed",
        "job_stopped",
        "export_succeeded",
    } <= told, told
    assert slack.views(OWNER) and slack.calls("chat.update") and slack.uploads(completed=True)
    assert slack.live_tokens(allowed={f"<@{OWNER}>"}) == []
    # the hostile text did reach Slack (escaped), and the owner's own mention stays live
    sent = json.dumps([c.params for c in slack.calls()] + [r.body for r in slack.responses()], ensure_ascii=False)
    assert "&lt;!channel&gt;" in sent and "&lt;@U123&gt;" in sent and "&lt;https://evil.example|click&gt;" in sent
    assert f"<@{OWNER}>" in sent
    carried = {c.method for c in slack.calls() if "&lt;" in json.dumps(c.params, ensure_ascii=False)}
    assert {"chat.postMessage", "chat.update", "views.publish"} <= carried, carried  # each kind saw hostile text
    assert any("&lt;" in r.body.get("text", "") for r in slack.responses())


async def _exported(bot: SlackBot, job_id: str) -> bool:
    job = await bot.runtime.store.get(job_id)
    return job is not None and job.export_state == "exported" and job.state is JobState.SUCCEEDED


def test_the_console_shows_typed_text_as_typed(tmp_path: Path) -> None:
    """Escaping is Slack's: the terminal shows `<!channel>&x`, never `&lt;`."""
    typed = "llm gpu=0 out=output/<!channel>&x --dry-run\nstatus <@U123>\n"
    out = subprocess.run(
        [str(VENV_BIN / "trainbot"), "console"],
        input=typed,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=True,
    ).stdout
    assert "output/<!channel>&x" in out and "<@U123>" in out
    assert "&lt;" not in out and "&amp;" not in out
