"""Slack request signing and payload shapes for tests (used by ``tests/slack_standin/``).

Slack signs every HTTP request it sends to an app: ``X-Slack-Signature: v0=<hex>`` where hex is
HMAC-SHA256(signing_secret, ``v0:{X-Slack-Request-Timestamp}:{raw body}``).  Bolt rejects requests whose
timestamp is more than 5 minutes off.  The payload builders below reproduce the fields real Slack sends
(and that Bolt reads) for slash commands and ``block_actions`` interactions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

TEAM_ID = "T0TEST0001"
TEAM_DOMAIN = "trainbot-test"
APP_ID = "A0TEST0001"
DEFAULT_USER = "U0TESTUSER"
DEFAULT_CHANNEL = "C0TESTCHAN"
VERIFICATION_TOKEN = "legacy-verification-token"


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack adds to a request with this raw body (timestamp defaults to now)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = f"v0:{ts}:{body}".encode()
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def form_headers(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    return {"Content-Type": "application/x-www-form-urlencoded", **sign(secret, body, timestamp)}


def trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"


def slash_command_payload(
    *,
    text: str,
    user_id: str = DEFAULT_USER,
    channel_id: str = DEFAULT_CHANNEL,
    command: str = "/train",
    response_url: str,
    user_name: str = "tester",
    channel_name: str = "trainbot",
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
) -> dict[str, str]:
    """The form fields of a slash command (also the Socket Mode ``slash_commands`` payload)."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id(),
    }


def block_actions_payload(
    *,
    action_id: str,
    value: str,
    response_url: str,
    user_id: str = DEFAULT_USER,
    channel_id: str = DEFAULT_CHANNEL,
    message_ts: str = "1700000000.000100",
    message: dict[str, Any] | None = None,
    block_id: str = "actions",
    action_type: str = "button",
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
) -> dict[str, Any]:
    """A ``block_actions`` payload for a button click on a message the bot posted."""
    msg = dict(message) if message else {"type": "message", "text": "", "blocks": []}
    msg.setdefault("ts", message_ts)
    action: dict[str, Any] = {
        "type": action_type,
        "action_id": action_id,
        "block_id": block_id,
        "value": value,
        "action_ts": f"{time.time():.6f}",
    }
    if action_type == "button":
        action["text"] = {"type": "plain_text", "text": value, "emoji": True}
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": "tester", "name": "tester", "team_id": team_id},
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": msg["ts"],
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id(),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "trainbot"},
        "message": msg,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }


def encode_slash_command(
    secret: str, fields: dict[str, str], timestamp: int | None = None
) -> tuple[str, dict[str, str]]:
    """Form-encode a slash command and sign it: returns (body, headers)."""
    body = urlencode(fields)
    return body, form_headers(secret, body, timestamp)


def encode_interactive(
    secret: str, payload: dict[str, Any], timestamp: int | None = None
) -> tuple[str, dict[str, str]]:
    """Encode an interactive payload as Slack does (form field ``payload=<json>``) and sign it."""
    body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))})
    return body, form_headers(secret, body, timestamp)


def event_callback_payload(event: dict[str, Any], team_id: str, api_app_id: str, bot_user_id: str) -> dict[str, Any]:
    """The Events API ``event_callback`` wrapper around ``event`` (the Socket Mode ``events_api`` payload)."""
    authorization = {"enterprise_id": None, "team_id": team_id, "user_id": bot_user_id, "is_bot": True}
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": {"event_ts": f"{time.time():.6f}", **event},
        "type": "event_callback",
        "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [{**authorization, "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    }
