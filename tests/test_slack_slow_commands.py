"""One slow command does not hold up other users: the work after each ack runs at most `commands_at_once` at a time.

A real slow command: `logs <id> full` while Slack rate-limits uploads (429 with Retry-After), so the upload waits
seconds before its one retry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.slack_env import answers, command, fake_config, job_ended, job_id_from_answer, running_bot
from tests.slack_standin import SlackStandIn

UPLOAD = "files.getUploadURLExternal"
UPLOAD_ANSWER = re.compile(r"The whole log of job|could not upload the log")


@pytest.mark.parametrize(("at_once", "help_first"), [(4, True), (1, False)])
async def test_a_slow_command_does_not_stall_another_users(
    slack: SlackStandIn, tmp_path: Path, at_once: int, help_first: bool
) -> None:
    config = fake_config(tmp_path, sections=f"commands_at_once = {at_once}\n")  # lands in fake_config's [slack]
    async with running_bot(config, slack) as bot:
        await command(slack, bot, "llm gpu=0 out=output/slow", user="U0ALICE")
        job_id = await job_id_from_answer(slack)
        await slack.wait_for(lambda: job_ended(bot, job_id), 20, what="the job")
        slack.set_rate_limit(UPLOAD, (1, 3.0))
        # someone else's upload takes the one call there is: Alice's waits for the Retry-After, then retries
        await slack.web_client().files_getUploadURLExternal(filename="x.log", length=1)
        await command(slack, bot, f"logs {job_id} full", user="U0ALICE")
        await slack.wait_for(lambda: slack.rate_limited(UPLOAD), 10, what="Alice's upload to be rate-limited")

        await command(slack, bot, "help", user="U0BOB")
        await slack.wait_for(lambda: len(answers(slack)) == 3, 20, what="both answers")
    upload_answer, help_answer = answers(slack)[1], answers(slack)[2]
    if help_first:
        upload_answer, help_answer = help_answer, upload_answer
    # the upload's answer (uploaded after the retry, or, on a loaded machine, refused again): either way it came last
    assert UPLOAD_ANSWER.search(upload_answer), upload_answer
    assert "/train" in help_answer and not UPLOAD_ANSWER.search(help_answer), help_answer
