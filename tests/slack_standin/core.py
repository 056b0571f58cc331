"""The stand-in's state and message store, shared by its Web API, HTTP and Socket Mode parts."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeGuard, TypeVar, overload

from aiohttp import web

from tests.slack_signing import APP_ID, TEAM_ID
from tests.slack_standin.limits import DEFAULT_RATE_LIMITS, RateLimit, _Bucket
from tests.slack_standin.records import JSON, Call, RateLimitHit, ResponsePost, Upload, _Fault

T = TypeVar("T")


def _err(error: str, *messages: str) -> JSON:
    body: JSON = {"ok": False, "error": error}
    if messages:
        body["response_metadata"] = {"messages": list(messages)}
    return body


def _missing(name: str) -> JSON:
    return _err("invalid_arguments", f"[ERROR] missing required field: {name}")


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


class StandInCore:
    """What every part of the stand-in reads and writes: its settings, recordings and messages."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test-bot-token",
        app_token: str = "xapp-1-test-app-token",
        signing_secret: str = "test-signing-secret",
        rate_limits: Mapping[str, RateLimit | None] | None = None,
        channels: Iterable[str] | None = None,
        team_id: str = TEAM_ID,
        app_id: str = APP_ID,
        bot_user_id: str = "U0TESTBOT0",
        bot_id: str = "B0TESTBOT0",
    ) -> None:
        self.bot_token, self.app_token, self.signing_secret = bot_token, app_token, signing_secret
        self.team_id, self.app_id, self.bot_user_id, self.bot_id = team_id, app_id, bot_user_id, bot_id
        self.channels: set[str] | None = set(channels) if channels is not None else None
        self.rate_limits: dict[str, RateLimit | None] = {**DEFAULT_RATE_LIMITS, **(rate_limits or {})}
        self.host, self.port = "127.0.0.1", 0
        self.socket_connects = 0
        self._runner: web.AppRunner | None = None
        self._restart: asyncio.Task[None] | None = None
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._faults: list[_Fault] = []
        self._calls: list[Call] = []
        self._messages: list[JSON] = []
        self._updates: list[tuple[str, str, JSON]] = []
        self._ephemerals: list[JSON] = []
        self._views: list[JSON] = []
        self._uploads: dict[str, Upload] = {}
        self._hooks: dict[str, JSON] = {}
        self._responses: list[ResponsePost] = []
        self._hits: list[RateLimitHit] = []
        self._tickets: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._acks: list[JSON] = []
        self._pushed: list[JSON] = []
        self._last_us = 0
        self._usergroups: dict[str, JSON] = {}

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    @overload
    async def wait_for(
        self,
        predicate: Callable[[], Awaitable[T]],
        timeout: float = ...,  # noqa: ASYNC109
        *,
        what: str = ...,
    ) -> T: ...
    @overload
    async def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = ...,  # noqa: ASYNC109
        *,
        what: str = ...,
    ) -> T: ...
    async def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 5.0,  # noqa: ASYNC109
        *,
        what: str = "",
    ) -> Any:
        """Poll ``predicate`` (sync or async) until it returns something truthy, which is returned;
        raise TimeoutError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            if loop.time() >= deadline:
                recent = [(c.method, c.status) for c in self._calls[-8:]]
                raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}; calls: {recent}")
            await asyncio.sleep(0.01)

    def _next_ts(self) -> str:
        self._last_us = max(int(time.time() * 1_000_000), self._last_us + 1)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def _find(self, channel: str, ts: str) -> JSON | None:
        return next((m for m in self._messages if m["channel"] == channel and m["ts"] == ts), None)

    def _channel_ok(self, channel: Any) -> TypeGuard[str]:
        return bool(channel) and isinstance(channel, str) and (self.channels is None or channel in self.channels)

    def _store(self, channel: str, params: JSON, user: str | None = None) -> JSON:
        msg: JSON = {
            "type": "message",
            "channel": channel,
            "ts": self._next_ts(),
            "text": params.get("text") or "",
        }
        if user:
            msg["user"] = user
        else:
            msg.update(user=self.bot_user_id, bot_id=self.bot_id, app_id=self.app_id, team=self.team_id)
        for key in ("blocks", "attachments", "files", "metadata"):
            if params.get(key) is not None:
                msg[key] = params[key]
        thread_ts = params.get("thread_ts")
        if thread_ts:
            msg["thread_ts"] = thread_ts
            if _flag(params.get("reply_broadcast")):
                msg.update(subtype="thread_broadcast", reply_broadcast=True)
            parent = self._find(channel, thread_ts)
            if parent is not None:
                parent.update(thread_ts=thread_ts, reply_count=parent.get("reply_count", 0) + 1)
        self._messages.append(msg)
        return msg

    def _content_error(self, params: JSON) -> JSON | None:
        text, blocks, attachments = params.get("text"), params.get("blocks"), params.get("attachments")
        if blocks is not None:
            if not isinstance(blocks, list) or not all(isinstance(b, dict) and "type" in b for b in blocks):
                return _err("invalid_blocks_format")
            if len(blocks) > 50:
                return _err("invalid_blocks", "[ERROR] no more than 50 items allowed [json-pointer:/blocks]")
            for i, b in enumerate(blocks):
                if len(str((b.get("text") or {}).get("text", ""))) > 3000:
                    where = f"[json-pointer:/blocks/{i}/text/text]"
                    return _err("invalid_blocks", f"[ERROR] must be less than 3001 characters {where}")
        if not text and not blocks and not attachments:
            return _err("no_text")
        if text and len(str(text)) > 40000:
            return _err("msg_too_long")
        return None
