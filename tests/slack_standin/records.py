"""What the stand-in records (calls, uploads, response_url posts, faults) and what Slack shows of mrkdwn text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]
UPLOAD, RESPONSE_URL = "upload", "response_url"  # pseudo-method names used in the call log and faults


# What Slack turns into a mention, a channel ping or a link in message text and mrkdwn (inside code too): an
# unescaped `<…>`. Plain-text objects are shown as typed, so they can't carry one.
LIVE_TOKEN = re.compile(r"<[^<>\n]*>")
LIVE_KEYS = ("text", "initial_comment", "title", "alt_text")


def slack_shows(text: str) -> str:
    """What a reader sees of mrkdwn text (its `&lt;`, `&gt;`, `&amp;` decoded, as Slack does)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def mrkdwn_texts(value: Any, where: str = "") -> Iterable[tuple[str, str]]:
    """(where, text) of every string Slack parses for mentions and links in a payload: message text, mrkdwn
    text objects (sections, fields, context, confirm dialogs), file titles and comments; not plain_text."""
    if isinstance(value, Mapping):
        if value.get("type") == "plain_text":
            return
        for key, item in value.items():
            if isinstance(item, str) and key in LIVE_KEYS:
                yield f"{where}.{key}", item
            elif isinstance(item, Mapping | list):
                yield from mrkdwn_texts(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from mrkdwn_texts(item, f"{where}[{i}]")


@dataclass
class Call:
    method: str
    params: JSON
    time: float
    status: int
    response: Any
    token: str | None = None


@dataclass
class RateLimitHit:
    method: str
    key: str
    retry_after: int
    time: float


@dataclass
class Upload:
    file_id: str
    filename: str
    length: int
    content: bytes | None = None
    title: str | None = None
    completed: bool = False
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    share_ts: str | None = None


@dataclass
class ResponsePost:
    hook_id: str
    body: JSON
    time: float
    context: JSON = field(default_factory=dict)


@dataclass
class _Fault:
    status: int
    until: float | None
    remaining: int | None
    methods: frozenset[str] | None
    body: str | JSON | None
