"""SlackStandIn itself: listening on 127.0.0.1 (and refusing connections), and the recordings tests read."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable

import aiohttp
from aiohttp import web

from tests.slack_standin.endpoints import HttpEndpoints
from tests.slack_standin.records import (
    JSON,
    LIVE_TOKEN,
    RESPONSE_URL,
    Call,
    RateLimitHit,
    ResponsePost,
    Upload,
    mrkdwn_texts,
)
from tests.slack_standin.socket_mode import SocketMode


class SlackStandIn(SocketMode, HttpEndpoints):
    """``async with SlackStandIn(bot_token=..., app_token=..., signing_secret=...) as slack: ...``"""

    # ------------------------------------------------------------------ lifecycle
    @property
    def is_up(self) -> bool:
        return self._runner is not None

    async def __aenter__(self) -> SlackStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on 127.0.0.1 (an ephemeral port first, then the same port again after a restart)."""
        if self._runner is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/v1/{file_id}", self._upload)
        app.router.add_post("/hooks/{hook_id}", self._hook)
        app.router.add_get("/link/", self._socket)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def stop(self) -> None:
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        await self._shutdown()

    async def _shutdown(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def refuse_connections(self, for_seconds: float | None = None) -> None:
        """Stop listening (open connections and sockets are dropped), so connects are refused.

        Comes back on the same port after ``for_seconds``, or when ``resume_connections()`` is called.
        """
        await self._shutdown()
        if for_seconds is not None:
            self._restart = asyncio.create_task(self._resume_after(for_seconds))

    async def _resume_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._restart = None
        await self.start()

    async def resume_connections(self) -> None:
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        await self.start()

    # ------------------------------------------------------------------ recordings
    def calls(self, method: str | None = None) -> list[Call]:
        return [c for c in self._calls if method is None or c.method == method]

    def messages(self, channel: str | None = None, *, top_level: bool = False) -> list[JSON]:
        """Messages in the order posted (current content, after updates), thread replies included
        unless ``top_level`` (broadcast replies count as top level, as in the channel history)."""
        return [
            dict(m)
            for m in self._messages
            if (channel is None or m["channel"] == channel)
            and not (top_level and m.get("thread_ts") not in (None, m["ts"]) and not m.get("reply_broadcast"))
        ]

    def message(self, channel: str, ts: str) -> JSON | None:
        m = self._find(channel, ts)
        return dict(m) if m else None

    def thread(self, channel: str, ts: str) -> list[JSON]:
        """Replies in the thread under ``ts`` (parent excluded), oldest first; file shares included."""
        return [dict(m) for m in self._messages if m["channel"] == channel and m.get("thread_ts") == ts != m["ts"]]

    def updates_of(self, ts: str, channel: str | None = None) -> list[JSON]:
        """Params of each successful chat.update (or response_url replace_original) of ``ts``, in order."""
        return [p for c, t, p in self._updates if t == ts and (channel is None or c == channel)]

    def uploads(self, *, completed: bool | None = None) -> list[Upload]:
        return [u for u in self._uploads.values() if completed is None or u.completed == completed]

    def ephemerals(self, channel: str | None = None, user: str | None = None) -> list[JSON]:
        """chat.postEphemeral messages (response_url posts are in ``responses()``)."""
        return [
            e
            for e in self._ephemerals
            if (channel is None or e["channel"] == channel) and (user is None or e["user"] == user)
        ]

    def responses(self) -> list[ResponsePost]:
        return list(self._responses)

    def rate_limited(self, method: str | None = None) -> list[RateLimitHit]:
        return [h for h in self._hits if method is None or h.method == method]

    def views(self, user_id: str | None = None) -> list[JSON]:
        return [v for v in self._views if user_id is None or v["user_id"] == user_id]

    def acks(self) -> list[JSON]:
        """Socket Mode acks as the client sent them: ``{"envelope_id": ..., "payload": ...}``."""
        return list(self._acks)

    def live_tokens(self, allowed: Iterable[str] = ()) -> list[tuple[str, str]]:
        """(where, token) of every live mention or link in what the app sent (Web API calls and response_url
        posts), except the tokens in ``allowed`` (the app's own mentions of users, say)."""
        ok = set(allowed)
        sent = [(c.method, c.params) for c in self._calls] + [(RESPONSE_URL, r.body) for r in self._responses]
        return [
            (f"{method}{where}", token)
            for method, params in sent
            for where, text in mrkdwn_texts(params)
            for token in LIVE_TOKEN.findall(text)
            if token not in ok
        ]

    def pushed(self) -> list[JSON]:
        return list(self._pushed)
