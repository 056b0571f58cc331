"""What the Slack front-end tests share: configs (real swift on the tiny model, or tests/fake_swift.py), the bot run
in-process against the Slack stand-in, and reading back what reached the stand-in."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from bot.slack.bot import SlackBot
from bot.slack.notifier import READER
from bot.slack.retry import RetryPolicy
from demo.run import default_swift_bin, tiny_config_toml
from runner.config import Config, load_config
from storage.models import JobState
from tests.fake_swift import fake_swift_bin
from tests.slack_signing import DEFAULT_CHANNEL
from tests.slack_standin import SlackStandIn

BOT, APP, SECRET = "xoxb-1-bot", "xapp-1-app", "s3cr3t"
CH = DEFAULT_CHANNEL
FAST = RetryPolicy(base_s=0.2, cap_s=1.0, jitter=0.0)
JOB_ID = re.compile(r"Job `([a-z0-9]+)`")


def standin(**kwargs: Any) -> SlackStandIn:
    return SlackStandIn(bot_token=BOT, app_token=APP, signing_secret=SECRET, **kwargs)


def swift_config(
    tmp: Path, assets: dict[str, object], *, extra: dict[str, object] | None = None, sections: str = ""
) -> Config:
    path = tmp / "trainbot.toml"
    path.write_text(
        tiny_config_toml(
            assets, swift_bin=default_swift_bin(), extra=extra, sections="[slack]\ncard_interval_s = 1.0\n" + sections
        )
    )
    return load_config(path, base_dir=tmp)


def fake_config(
    tmp: Path,
    *,
    gpus: int = 4,
    steps: int = 8,
    save_steps: int = 4,
    step_s: float = 0.1,
    sections: str = "",
    slack_api_url: str | None = None,
    env: dict[str, str] | None = None,
    eval_steps: int | None = None,
) -> Config:
    """tests/fake_swift.py as `swift`, GPUs from an inventory; `env`: more of its FAKE_SWIFT_* settings."""
    more_env = "".join(f"{k} = {json.dumps(v)}\n" for k, v in (env or {}).items())
    evals = f"eval_steps = {eval_steps}\n" if eval_steps else ""
    path = tmp / "trainbot.toml"
    path.write_text(
        f"""[swift]
bin = {json.dumps(fake_swift_bin(tmp))}
version = "4.6.0"
[swift.env]
FAKE_SWIFT_STEP_S = "{step_s}"
{more_env}[runner]
progress_poll_seconds = 0.2
[gpus]
inventory = {gpus}
poll_seconds = 60
[llm]
max_steps = {steps}
save_steps = {save_steps}
logging_steps = 1
{evals}[slack]
card_interval_s = 1.0
"""
        + (f"api_url = {json.dumps(slack_api_url)}\n" if slack_api_url else "")
        + sections
    )
    return load_config(path, base_dir=tmp)


@asynccontextmanager
async def running_bot(
    config: Config, slack: SlackStandIn, mode: Literal["http", "socket"] = "http", **kwargs: Any
) -> AsyncIterator[SlackBot]:
    bot = SlackBot(
        config,
        api_url=slack.api_url,
        mode=mode,
        host="127.0.0.1",
        port=0,
        bot_token=BOT,
        app_token=APP if mode == "socket" else None,
        signing_secret=SECRET,
        policy=kwargs.pop("policy", FAST),
        poll_s=0.1,
        **kwargs,
    )
    async with bot:
        if mode == "socket":
            await slack.wait_for_socket()
        yield bot


async def command(
    slack: SlackStandIn, bot: SlackBot, text: str, user: str = "U0ALICE", channel: str = CH
) -> tuple[int, str]:
    """A signed slash command posted to the bot's HTTP endpoint; (status, body)."""
    body, headers = slack.signed_slash_command(text=text, user_id=user, channel_id=channel)
    return await slack.post_to_app(bot.url, body, headers)


async def press(
    slack: SlackStandIn, bot: SlackBot, action_id: str, job_id: str, card_ts: str, user: str, channel: str = CH
) -> tuple[int, str]:
    body, headers = slack.signed_block_actions(
        action_id=action_id, value=job_id, user_id=user, channel_id=channel, message_ts=card_ts
    )
    return await slack.post_to_app(bot.url, body, headers)


def answers(slack: SlackStandIn) -> list[str]:
    """What the bot told askers through response_url (ephemeral), in order."""
    return [str(r.body.get("text", "")) for r in slack.responses()]


async def job_id_from_answer(slack: SlackStandIn, nth: int = 0, timeout: float = 10.0) -> str:  # noqa: ASYNC109
    def found() -> str | None:
        ids = [m[1] for text in answers(slack) if (m := JOB_ID.search(text))]
        return ids[nth] if len(ids) > nth else None

    return str(await slack.wait_for(found, timeout, what=f"job #{nth + 1} in an answer"))


def payload(message: dict[str, Any]) -> dict[str, Any]:
    return dict((message.get("metadata") or {}).get("event_payload") or {})


def card_of(slack: SlackStandIn, job_id: str, channel: str = CH) -> dict[str, Any] | None:
    cards = [
        m
        for m in slack.messages(channel, top_level=True)
        if payload(m).get("job_id") == job_id and payload(m).get("topic") == "job_created"
    ]
    assert len(cards) <= 1, f"job {job_id} has {len(cards)} cards"
    return cards[0] if cards else None


async def wait_card(slack: SlackStandIn, job_id: str, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
    card: dict[str, Any] = await slack.wait_for(lambda: card_of(slack, job_id), timeout, what=f"the card of {job_id}")
    return card


def topics(slack: SlackStandIn, card_ts: str, channel: str = CH) -> list[str]:
    """The thread under a card: the topic of each notice told (several may share a reply), a file share as
    `file:<name>`."""
    out: list[str] = []
    for m in slack.thread(channel, card_ts):
        out += [f"file:{m['files'][0]['name']}"] if m.get("files") else [str(t) for t in payload(m).get("topics", [])]
    return out


def card_text(message: dict[str, Any]) -> str:
    """All the text of a card's blocks."""
    return json.dumps(message.get("blocks") or [], ensure_ascii=False)


def buttons(message: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in message.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]]


async def job_ended(bot: SlackBot, job_id: str) -> bool:
    job = await bot.runtime.store.get(job_id)
    return job is not None and job.state.is_terminal


async def all_told(bot: SlackBot) -> bool:
    return not await bot.runtime.store.pending_notices(READER)


async def card_shows(slack: SlackStandIn, bot: SlackBot, job_id: str, state: JobState) -> bool:
    card = card_of(slack, job_id)
    return card is not None and f"is *{state}*" in card_text(slack.message(CH, card["ts"]) or {})
