"""A Slack stand-in server on 127.0.0.1 for tests: Web API, file uploads, response_url, Socket Mode.

Point ``AsyncWebClient(token=..., base_url=slack.api_url)`` at it.  It checks tokens, required fields and
rate limits like Slack does (errors answered with HTTP 200 ``{"ok": false, "error": ...}``, rate limits
with HTTP 429 + ``Retry-After``), records everything, and can inject faults (HTTP 5xx, refused
connections).  Payload shapes and request signing live in ``tests/slack_signing.py``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
import math
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeGuard, TypeVar, cast, overload

import aiohttp
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from tests import slack_signing as sig
from tests.slack_signing import APP_ID, DEFAULT_CHANNEL, DEFAULT_USER, TEAM_DOMAIN, TEAM_ID

T = TypeVar("T")
JSON = dict[str, Any]
RateLimit = tuple[int, float]
"""(burst, per_seconds): a token bucket holding ``burst`` calls, refilled at ``burst/per_seconds`` per s."""

DEFAULT_RATE_LIMITS: dict[str, RateLimit] = {
    # Slack's documented numbers (docs.slack.dev/reference/methods/...), not more generous:
    "chat.postMessage": (3, 3.0),  # special tier, keyed per channel: "one message per second", "short bursts"
    "chat.update": (50, 60.0),  # tier 3, "50+ per minute": at most 50 in any 60 s (WINDOW_LIMITS)
    "chat.postEphemeral": (100, 60.0),  # tier 4
    "views.publish": (100, 60.0),  # tier 4
    "files.getUploadURLExternal": (100, 60.0),  # tier 4
    "files.completeUploadExternal": (100, 60.0),  # tier 4
    "auth.test": (100, 60.0),  # special, generous
    "apps.connections.open": (5, 60.0),  # tier 1 (small bursts tolerated)
    "conversations.history": (50, 60.0),  # tier 3
    "conversations.replies": (50, 60.0),  # tier 3
    "*": (20, 60.0),  # tier 2 for anything else
}
PER_CHANNEL_LIMITS = frozenset({"chat.postMessage"})
WINDOW_LIMITS = frozenset({"chat.update"})  # (n, s): n calls in any s seconds, no burst on top
JSON_PARAMS = ("blocks", "attachments", "view", "files", "metadata")
UPLOAD, RESPONSE_URL = "upload", "response_url"  # pseudo-method names used in the call log and faults
MAX_RESPONSE_URL_USES = 5


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


class _Bucket:
    def __init__(self, limit: RateLimit) -> None:
        self.capacity, self.rate = float(limit[0]), limit[0] / limit[1]
        self.tokens, self.stamp = self.capacity, time.monotonic()

    def take(self) -> int:
        """0 when the call is allowed, else the Retry-After seconds (an integer >= 1, as Slack sends)."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - self.tokens) / self.rate))


class _Window(_Bucket):
    """At most ``limit[0]`` calls in any ``limit[1]`` seconds (a bucket would allow a full burst on top)."""

    def __init__(self, limit: RateLimit) -> None:
        super().__init__(limit)
        self.count, self.span = limit
        self.sent: collections.deque[float] = collections.deque()

    def take(self) -> int:
        now = time.monotonic()
        while self.sent and self.sent[0] <= now - self.span:
            self.sent.popleft()
        if len(self.sent) < self.count:
            self.sent.append(now)
            return 0
        return max(1, math.ceil(self.sent[0] + self.span - now))


def _err(error: str, *messages: str) -> JSON:
    body: JSON = {"ok": False, "error": error}
    if messages:
        body["response_metadata"] = {"messages": list(messages)}
    return body


def _missing(name: str) -> JSON:
    return _err("invalid_arguments", f"[ERROR] missing required field: {name}")


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


class SlackStandIn:
    """``async with SlackStandIn(bot_token=..., app_token=..., signing_secret=...) as slack: ...``"""

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

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

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

    def fail_with(
        self,
        status: int = 500,
        *,
        for_seconds: float | None = None,
        times: int | None = None,
        methods: Iterable[str] | None = None,
        body: str | JSON | None = None,
    ) -> None:
        """Answer HTTP ``status`` for ``for_seconds`` and/or the next ``times`` requests (until
        ``clear_faults()`` if neither).  ``methods`` limits it to those API methods (or ``"upload"``,
        ``"response_url"``); default: every HTTP endpoint.  The body is an HTML error page (like Slack's
        edge) unless given (a dict is sent as JSON)."""
        until = None if for_seconds is None else time.monotonic() + for_seconds
        self._faults.append(_Fault(status, until, times, frozenset(methods) if methods else None, body))

    def clear_faults(self) -> None:
        self._faults.clear()

    def set_rate_limit(self, method: str, limit: RateLimit | None) -> None:
        """Set (or with None, remove) the limit of ``method`` (``"*"``: the default) and reset its buckets."""
        self.rate_limits[method] = limit
        self._buckets = {k: b for k, b in self._buckets.items() if k[0] != method}

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

    # ------------------------------------------------------------------ test-side helpers
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

    # ------------------------------------------------------------------ Socket Mode
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

    # ------------------------------------------------------------------ internals
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

    async def _params(self, request: web.Request) -> JSON:
        params: JSON = dict(request.query)
        ctype = request.content_type
        if ctype == "application/json":
            body = await request.json() if request.can_read_body else {}
            params.update(body if isinstance(body, dict) else {})
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            for k, v in (await request.post()).items():
                params[k] = v if isinstance(v, str) else {"filename": getattr(v, "filename", None)}
        for key in JSON_PARAMS:
            if isinstance(params.get(key), str):
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(params[key])
        return params

    def _fault(self, method: str) -> _Fault | None:
        now = time.monotonic()
        self._faults = [f for f in self._faults if (f.until is None or f.until > now) and f.remaining != 0]
        for f in self._faults:
            if f.methods is None or method in f.methods:
                if f.remaining is not None:
                    f.remaining -= 1
                return f
        return None

    def _reply(
        self,
        method: str,
        params: JSON,
        status: int,
        body: Any,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        text: bool = False,
    ) -> web.Response:
        self._calls.append(Call(method, params, time.time(), status, body, token))
        if isinstance(body, dict):
            return web.json_response(body, status=status, headers=headers)
        ctype = "text/plain" if text else "text/html"
        return web.Response(text=str(body), status=status, headers=headers, content_type=ctype)

    def _fault_reply(self, method: str, params: JSON, fault: _Fault) -> web.Response:
        body = fault.body if fault.body is not None else f"<html><body><h1>{fault.status} Error</h1></body></html>"
        return self._reply(method, params, fault.status, body)

    def _auth_error(self, method: str, token: str | None) -> JSON | None:
        if not token:
            return _err("not_authed")
        wanted, other = (
            (self.app_token, self.bot_token) if method == "apps.connections.open" else (self.bot_token, self.app_token)
        )
        if token == other:
            return _err("not_allowed_token_type")
        return None if token == wanted else _err("invalid_auth")

    def _rate_limit(self, method: str, params: JSON) -> int:
        limit = self.rate_limits.get(method, self.rate_limits.get("*"))
        if limit is None:
            return 0
        key = str(params.get("channel") or "") if method in PER_CHANNEL_LIMITS else ""
        bucket = self._buckets.get((method, key))
        if bucket is None:
            bucket = self._buckets[(method, key)] = (_Window if method in WINDOW_LIMITS else _Bucket)(limit)
        retry_after = bucket.take()
        if retry_after:
            self._hits.append(RateLimitHit(method, key, retry_after, time.time()))
        return retry_after

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            params = await self._params(request)
        except ValueError:
            return self._reply(method, {}, 200, _err("invalid_json"))
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else params.pop("token", None)
        fault = self._fault(method)
        if fault is not None:
            return self._fault_reply(method, params, fault)
        error = self._auth_error(method, token)
        if error is not None:
            return self._reply(method, params, 200, error, token)
        retry_after = self._rate_limit(method, params)
        if retry_after:
            body, headers = _err("ratelimited"), {"Retry-After": str(retry_after)}
            return self._reply(method, params, 429, body, token, headers)
        handler = self._handlers.get(method)
        result = handler(self, params) if handler else {**_err("unknown_method"), "req_method": method}
        return self._reply(method, params, 200, result, token)

    # ------------------------------------------------------------------ Web API methods
    def _auth_test(self, params: JSON) -> JSON:
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "Trainbot Test",
            "user": "trainbot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _post_message(self, params: JSON) -> JSON:
        channel = params.get("channel")
        if not self._channel_ok(channel):
            return _err("channel_not_found")
        error = self._content_error(params)
        if error is not None:
            return error
        msg = self._store(channel, params)
        reply = {k: v for k, v in msg.items() if k != "channel"}
        return {"ok": True, "channel": channel, "ts": msg["ts"], "message": reply}

    def _update(self, params: JSON) -> JSON:
        channel, ts = params.get("channel"), params.get("ts")
        if not self._channel_ok(channel):
            return _err("channel_not_found")
        if not ts:
            return _missing("ts")
        msg = self._find(channel, ts)
        if msg is None:
            return _err("message_not_found")
        if msg.get("bot_id") != self.bot_id:
            return _err("cant_update_message")
        error = self._content_error(params)
        if error is not None:
            return error
        self._apply_update(channel, ts, msg, params)
        return {"ok": True, "channel": channel, "ts": ts, "text": msg["text"], "message": dict(msg)}

    def _apply_update(self, channel: str, ts: str, msg: JSON, params: JSON) -> None:
        msg["text"] = params.get("text") or ""
        for key in ("blocks", "attachments"):
            msg.pop(key, None)
            if params.get(key) is not None:
                msg[key] = params[key]
        msg["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        self._updates.append((channel, ts, params))

    def _post_ephemeral(self, params: JSON) -> JSON:
        channel, user = params.get("channel"), params.get("user")
        if not self._channel_ok(channel):
            return _err("channel_not_found")
        if not user:
            return _missing("user")
        error = self._content_error(params)
        if error is not None:
            return error
        entry = {k: params.get(k) for k in ("channel", "user", "text", "blocks", "attachments", "thread_ts")}
        entry["message_ts"] = self._next_ts()
        self._ephemerals.append(entry)
        return {"ok": True, "message_ts": entry["message_ts"]}

    def _views_publish(self, params: JSON) -> JSON:
        user_id, view = params.get("user_id"), params.get("view")
        if not user_id:
            return _missing("user_id")
        if not isinstance(view, dict):
            return _missing("view") if view is None else _err("invalid_arguments", "[ERROR] invalid `view`")
        if view.get("type") != "home":
            return _err("invalid_arguments", "[ERROR] failed to match all allowed schemas [json-pointer:/view]")
        if len(view.get("blocks") or []) > 100:
            return _err("invalid_arguments", "[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]")
        published = {
            **view,
            "id": f"V{uuid.uuid4().hex[:10].upper()}",
            "team_id": self.team_id,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
            "hash": f"{time.time():.7f}",
        }
        self._views.append({"user_id": user_id, "view": published})
        return {"ok": True, "view": published}

    def _get_upload_url(self, params: JSON) -> JSON:
        filename, length = params.get("filename"), params.get("length")
        if not filename:
            return _missing("filename")
        try:
            size = int(length)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return _missing("length") if length is None else _err("invalid_arguments", "[ERROR] invalid `length`")
        if size <= 0:
            return _err("missing_argument")
        file_id = f"F{uuid.uuid4().hex[:10].upper()}"
        self._uploads[file_id] = Upload(file_id, str(filename), size)
        return {"ok": True, "upload_url": f"{self.base_url}/upload/v1/{file_id}", "file_id": file_id}

    def _complete_upload(self, params: JSON) -> JSON:
        files, channel = params.get("files"), params.get("channel_id")
        if not files:
            return _missing("files")
        if not isinstance(files, list) or not all(isinstance(f, dict) and f.get("id") for f in files):
            return _err("invalid_arguments", "[ERROR] invalid `files`")
        if not channel and params.get("channels"):
            channel = str(params["channels"]).split(",")[0]
        if channel and not self._channel_ok(channel):
            return _err("invalid_channel")
        if params.get("thread_ts") and not channel:
            return _err("invalid_arguments", "[ERROR] thread_ts requires channel_id")
        uploads = [self._uploads.get(f["id"]) for f in files]
        if any(u is None or u.content is None for u in uploads):
            return _err("file_not_found")
        shared = [u for u in uploads if u is not None]
        objs = []
        for u, f in zip(shared, files, strict=True):
            u.completed, u.title = True, f.get("title") or u.filename
            objs.append({"id": u.file_id, "name": u.filename, "title": u.title, "size": len(u.content or b"")})
        if channel:
            msg = self._store(
                channel,
                {"text": params.get("initial_comment"), "thread_ts": params.get("thread_ts"), "files": objs},
            )
            for u in shared:
                u.channel, u.thread_ts, u.share_ts = channel, params.get("thread_ts"), msg["ts"]
                u.initial_comment = params.get("initial_comment")
        return {"ok": True, "files": objs}

    def _connections_open(self, params: JSON) -> JSON:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return {"ok": True, "url": f"ws://{self.host}:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"}

    def _history(self, params: JSON) -> JSON:
        """Top-level messages (thread parents and broadcasts included), newest first, paged by cursor."""
        channel = params.get("channel")
        if not self._channel_ok(channel):
            return _err("channel_not_found")
        oldest, latest = float(params.get("oldest") or 0), float(params.get("latest") or "inf")
        found = [
            m
            for m in reversed(self._messages)
            if m["channel"] == channel
            and oldest <= float(m["ts"]) <= latest
            and (m.get("thread_ts") in (None, m["ts"]) or m.get("reply_broadcast"))
        ]
        return self._page(found, params)

    def _replies(self, params: JSON) -> JSON:
        """The parent then its replies, oldest first, paged by cursor."""
        channel, ts = params.get("channel"), params.get("ts")
        if not self._channel_ok(channel):
            return _err("channel_not_found")
        if not ts:
            return _missing("ts")
        parent = self._find(channel, ts)
        if parent is None:
            return _err("thread_not_found")
        return self._page(
            [parent, *(m for m in self._messages if m["channel"] == channel and m.get("thread_ts") == ts != m["ts"])],
            params,
        )

    def _page(self, found: list[JSON], params: JSON) -> JSON:
        limit = max(1, min(int(params.get("limit") or 100), 1000))
        start = int(params.get("cursor") or 0)
        page = found[start : start + limit]
        with_metadata = _flag(params.get("include_all_metadata"))
        out = [{k: v for k, v in m.items() if k != "channel" and (with_metadata or k != "metadata")} for m in page]
        more = start + limit < len(found)
        return {
            "ok": True,
            "messages": out,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _usergroups_list(self, params: JSON) -> JSON:
        users = _flag(params.get("include_users"))
        groups = [{k: v for k, v in g.items() if users or k != "users"} for g in self._usergroups.values()]
        return {"ok": True, "usergroups": groups}

    _handlers: ClassVar[dict[str, Callable[[SlackStandIn, JSON], JSON]]] = {
        "auth.test": _auth_test,
        "chat.postMessage": _post_message,
        "chat.update": _update,
        "chat.postEphemeral": _post_ephemeral,
        "views.publish": _views_publish,
        "files.getUploadURLExternal": _get_upload_url,
        "files.completeUploadExternal": _complete_upload,
        "apps.connections.open": _connections_open,
        "conversations.history": _history,
        "conversations.replies": _replies,
        "usergroups.list": _usergroups_list,
    }

    # ------------------------------------------------------------------ other endpoints
    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        fault = self._fault(UPLOAD)
        if fault is not None:
            return self._fault_reply(UPLOAD, {"file_id": file_id}, fault)
        upload = self._uploads.get(file_id)
        if upload is None:
            return self._reply(UPLOAD, {"file_id": file_id}, 404, "Not Found", text=True)
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            part = await reader.next()
            data = await part.read() if isinstance(part, aiohttp.BodyPartReader) else b""
        else:
            data = await request.read()
        upload.content = bytes(data)
        return self._reply(UPLOAD, {"file_id": file_id, "length": len(data)}, 200, f"OK - {len(data)}", text=True)

    async def _hook(self, request: web.Request) -> web.Response:
        hook_id = request.match_info["hook_id"]
        fault = self._fault(RESPONSE_URL)
        if fault is not None:
            return self._fault_reply(RESPONSE_URL, {"hook_id": hook_id}, fault)
        ctx = self._hooks.get(hook_id)
        try:
            body = await request.json()
        except ValueError:
            body = None
        params = {"hook_id": hook_id, "body": body}
        if ctx is None:
            return self._reply(RESPONSE_URL, params, 404, "no_service", text=True)
        if not isinstance(body, dict):
            return self._reply(RESPONSE_URL, params, 400, "invalid_payload", text=True)
        ctx["uses"] += 1
        if ctx["uses"] > MAX_RESPONSE_URL_USES:
            return self._reply(RESPONSE_URL, params, 404, "used_url", text=True)
        channel, ts = ctx["channel_id"], ctx["message_ts"]
        original = self._find(channel, ts) if ts else None
        if _flag(body.get("delete_original")):
            if original is not None:
                self._messages.remove(original)
        elif self._content_error(body) is not None:
            return self._reply(RESPONSE_URL, params, 400, "no_text", text=True)
        elif _flag(body.get("replace_original")) and original is not None:
            self._apply_update(channel, ts, original, body)
        elif body.get("response_type") == "in_channel":
            self._store(channel, body)
        self._responses.append(ResponsePost(hook_id, body, time.time(), dict(ctx)))
        return self._reply(RESPONSE_URL, params, 200, {"ok": True})

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
