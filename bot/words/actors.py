"""Who did something, in words: a Slack user as a live mention, the console, trainbot itself, or someone outside."""

from __future__ import annotations

import re
from typing import assert_never

from bot.words.format import PLAIN, Format
from storage.actors import Actor, Console, Outside, System, SystemActor, User


def who(user: str | None, fmt: Format = PLAIN) -> str:
    """A Slack user id (from Slack, not typed) as a live mention; anything else as text."""
    if not user:
        return "the console"
    return fmt.mention(user) if re.fullmatch(r"[UW][A-Z0-9]+", user) else fmt.text(user)


def by_words(actor: Actor | None, fmt: Format = PLAIN) -> str:
    """Who did it: a user (as `who` shows them), the console, trainbot itself, or someone outside trainbot."""
    match actor:
        case User(id=user_id):
            return who(user_id, fmt)
        case Console() | None:
            return "the console"
        case System(name=SystemActor.TRAINBOT):
            return "trainbot"
        case Outside():
            return "someone outside trainbot"
        case _:
            assert_never(actor)
