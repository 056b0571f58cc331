"""`/train help`: every command is covered, and every example in the help parses."""

from __future__ import annotations

import re

import pytest

from bot.chat.grammar import COMMANDS, Rejection, help_text
from bot.chat.help_text import VLM_KEYS
from tests.grammar_cases import p


def test_help_covers_every_command() -> None:
    overview = help_text(None)
    for command in COMMANDS:
        assert f"`/train {command}" in overview
        assert help_text(command).startswith(f"*`/train {command}")
    for key in VLM_KEYS:
        assert f"`{key}`" in help_text("vlm")
    assert help_text("nonsense") == overview
    assert "`out=/data/runs/my-run`" in help_text("llm", out_example="/data/runs/my-run")


@pytest.mark.parametrize("topic", [None, *COMMANDS])
def test_every_example_in_help_parses(topic: str | None) -> None:
    examples = re.findall(r"`/train ([^`<\[]+)`", help_text(topic))
    assert examples or topic in (None,)
    for example in examples:
        assert not isinstance(p(example), Rejection), example
