"""What Slack sends the app: slash commands and button clicks (signed for HTTP mode), response_urls, messages."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from tests import slack_signing as sig
from tests.slack_signing import DEFAULT_CHANNEL, DEFAULT_USER
from tests.slack_standin.core import StandInCore
from tests.slack_standin.records import JSON


class AppSide(StandInCore):
    """Test-side helpers: a client pointed at the stand-in, and payloads as Slack would send them to the app."""

    def web_client(self, **kwargs: Any) -> AsyncWebClient:
        return AsyncWebClient(token=self.bot_token, base_url=self.api_url, **kwargs)

    def seed_message(self, channel: str, text: str, user: str = DEFAULT_USER, thread_ts: str | None = None) -> str:
        """Put a message from a human user into the channel (e.g. a thread parent); returns its ts."""
        msg = self._store(channel, {"text": text, "thread_ts": thread_ts}, user=user)
        return str(msg["ts"])

    def add_usergroup(self, group_id: str, handle: str, users: Iterable[str]) -> None:
        """A user group (``S...`` id, ``@handle``) for ``usergroups.list``."""
        self._usergroups[group_id] = {
            "id": group_id,
            "team_id": self.team_id,
            "handle": handle,
            "name": handle,
            "is_usergroup": True,
            "users": list(users),
        }

    def new_response_url(self, channel_id: str, message_ts: str | None = None, kind: str = "command") -> str:
        hook_id = uuid.uuid4().hex
        self._hooks[hook_id] = {"channel_id": channel_id, "message_ts": message_ts, "kind": kind, "uses": 0}
        return f"{self.base_url}/hooks/{hook_id}"

    def slash_command_payload(
        self,
        text: str = "",
        user_id: str = DEFAULT_USER,
        channel_id: str = DEFAULT_CHANNEL,
        command: str = "/train",
    ) -> dict[str, str]:
        url = self.new_response_url(channel_id)
        return sig.slash_command_payload(
            text=text,
            user_id=user_id,
            channel_id=channel_id,
            command=command,
            response_url=url,
            team_id=self.team_id,
            api_app_id=self.app_id,
        )

    def block_actions_payload(
        self,
        action_id: str,
        value: str = "",
        user_id: str = DEFAULT_USER,
        channel_id: str = DEFAULT_CHANNEL,
        message_ts: str | None = None,
    ) -> JSON:
        """A button click on the message ``message_ts`` (default: the bot's latest message in the channel)."""
        if message_ts is None:
            mine = [m for m in self._messages if m["channel"] == channel_id and m.get("bot_id")]
            message_ts = mine[-1]["ts"] if mine else "1700000000.000100"
        msg = self._find(channel_id, message_ts)
        return sig.block_actions_payload(
            action_id=action_id,
            value=value,
            user_id=user_id,
            channel_id=channel_id,
            message_ts=message_ts,
            message=dict(msg) if msg else None,
            response_url=self.new_response_url(channel_id, message_ts, "action"),
            team_id=self.team_id,
            api_app_id=self.app_id,
        )

    def signed_slash_command(
        self,
        secret: str | None = None,
        text: str = "",
        user_id: str = DEFAULT_USER,
        channel_id: str = DEFAULT_CHANNEL,
        *,
        command: str = "/train",
        timestamp: int | None = None,
    ) -> tuple[str, dict[str, str]]:
        """(body, headers) of a signed slash-command POST, as Slack sends it to an HTTP-mode app."""
        fields = self.slash_command_payload(text, user_id, channel_id, command)
        return sig.encode_slash_command(secret or self.signing_secret, fields, timestamp)

    def signed_block_actions(
        self,
        secret: str | None = None,
        action_id: str = "",
        value: str = "",
        user_id: str = DEFAULT_USER,
        channel_id: str = DEFAULT_CHANNEL,
        *,
        message_ts: str | None = None,
        timestamp: int | None = None,
    ) -> tuple[str, dict[str, str]]:
        """(body, headers) of a signed ``payload=`` block_actions POST."""
        payload = self.block_actions_payload(action_id, value, user_id, channel_id, message_ts)
        return sig.encode_interactive(secret or self.signing_secret, payload, timestamp)

    async def post_to_app(self, url: str, body: str, headers: Mapping[str, str]) -> tuple[int, str]:
        """Deliver a signed request to an HTTP-mode app like Slack does; returns (status, response body)."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=dict(headers)) as r,
        ):
            return r.status, await r.text()
