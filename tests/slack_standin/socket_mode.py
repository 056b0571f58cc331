"""Socket Mode: the websocket the app connects to, the envelopes pushed over it and the acks it sends back."""

from __future__ import annotations

import json
import uuid
from typing import cast

import aiohttp
from aiohttp import web

from tests import slack_signing as sig
from tests.slack_signing import DEFAULT_CHANNEL, DEFAULT_USER
from tests.slack_standin.payloads import AppSide
from tests.slack_standin.records import JSON


class SocketMode(AppSide):
    """The ``/link/`` websocket (opened with a ticket from ``apps.connections.open``) and pushes over it."""

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("ticket") not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse(timeout=1.0)
        await ws.prepare(request)
        self._sockets.append(ws)
        self.socket_connects += 1
        hello = {
            "type": "hello",
            "num_connections": len(self._sockets),
            "debug_info": {"host": "applink-standin", "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }
        try:
            await ws.send_str(json.dumps(hello))
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(data, dict) and "envelope_id" in data:
                    self._acks.append(data)
        finally:
            self._sockets.remove(ws)
        return ws

    async def wait_for_socket(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.wait_for(lambda: any(not ws.closed for ws in self._sockets), timeout, what="a socket")

    async def push_envelope(self, type_: str, payload: JSON, *, accepts_response_payload: bool | None = None) -> str:
        """Send an envelope over the newest open Socket Mode connection; returns its envelope_id."""
        live = [ws for ws in self._sockets if not ws.closed]
        if not live:
            raise RuntimeError("no Socket Mode connection is open (await slack.wait_for_socket() first)")
        if accepts_response_payload is None:
            accepts_response_payload = type_ == "slash_commands" or payload.get("type") in (
                "view_submission",
                "block_suggestion",
            )
        envelope: JSON = {
            "envelope_id": str(uuid.uuid4()),
            "payload": payload,
            "type": type_,
            "accepts_response_payload": accepts_response_payload,
        }
        if type_ == "events_api":
            envelope.update(retry_attempt=0, retry_reason="")
        self._pushed.append(envelope)
        await live[-1].send_str(json.dumps(envelope))
        return str(envelope["envelope_id"])

    async def push_slash_command(
        self,
        text: str = "",
        user_id: str = DEFAULT_USER,
        channel_id: str = DEFAULT_CHANNEL,
        command: str = "/train",
    ) -> str:
        return await self.push_envelope(
            "slash_commands", self.slash_command_payload(text, user_id, channel_id, command)
        )

    async def push_block_action(
        self,
        action_id: str,
        value: str = "",
        user_id: str = DEFAULT_USER,
        channel_id: str = DEFAULT_CHANNEL,
        message_ts: str | None = None,
    ) -> str:
        payload = self.block_actions_payload(action_id, value, user_id, channel_id, message_ts)
        return await self.push_envelope("interactive", payload)

    async def push_event(self, event: JSON) -> str:
        """Push an Events API event (e.g. ``{"type": "app_home_opened", "user": ...}``) as event_callback."""
        payload = sig.event_callback_payload(event, self.team_id, self.app_id, self.bot_user_id)
        return await self.push_envelope("events_api", payload)

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> JSON:  # noqa: ASYNC109
        ack = await self.wait_for(
            lambda: next((a for a in self._acks if a.get("envelope_id") == envelope_id), None),
            timeout,
            what=f"ack of {envelope_id}",
        )
        return cast(JSON, ack)

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the connected clients to reconnect, like Slack does before rotating a connection."""
        msg = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-standin"}}
        for ws in [w for w in self._sockets if not w.closed]:
            await ws.send_str(json.dumps(msg))
