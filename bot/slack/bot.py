"""The Slack front end as one object: `async with SlackBot(config, ...) as bot:` runs the bot until the block ends.

Environment: SLACK_BOT_TOKEN (xoxb-..., always), SLACK_APP_TOKEN (xapp-...: Socket Mode, no public URL needed),
else SLACK_SIGNING_SECRET for HTTP mode (Slack posts commands, buttons and events to
`http://<host>:<slack port>/slack/events`).
"""

from __future__ import annotations

import logging
import os
import re
import socket
from types import TracebackType
from typing import Literal

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.chat.handlers import Handlers
from bot.slack.app import BotContext, build_app
from bot.slack.cards import CardSync
from bot.slack.groups import GroupDirectory
from bot.slack.notifier import Notifier
from bot.slack.pacing import Pacer, slack_limits
from bot.slack.retry import Outage, RetryPolicy
from bot.words.format import SLACK
from runner.config import Config
from runner.runtime import Runtime
from runner.wakeable import WakeableLoop

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
SLACK_API_URL = "https://slack.com/api/"
HTTP_TIMEOUT_S = 15
SLACK_SECRETS = ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET")


class SetupError(ValueError):
    """Something missing to connect to Slack; the message says what."""


class SlackBot:
    """`async with SlackBot(config, ...) as bot:` runs the bot until the block ends (tests run it in-process)."""

    def __init__(
        self,
        config: Config,
        *,
        api_url: str | None = None,
        mode: Literal["socket", "http"] | None = None,
        host: str = "0.0.0.0",
        port: int | None = None,
        bot_token: str | None = None,
        app_token: str | None = None,
        signing_secret: str | None = None,
        policy: RetryPolicy | None = None,
        poll_s: float = 0.5,
        runtime: Runtime | None = None,
    ) -> None:
        self.config = config
        self.bot_token = bot_token or os.environ.get("SLACK_BOT_TOKEN") or ""
        self.app_token = app_token or os.environ.get("SLACK_APP_TOKEN") or ""
        self.signing_secret = signing_secret or os.environ.get("SLACK_SIGNING_SECRET") or ""
        self.mode: Literal["socket", "http"] = mode or ("socket" if self.app_token else "http")
        if not self.bot_token:
            raise SetupError("set SLACK_BOT_TOKEN (the app's Bot User OAuth Token, xoxb-...)")
        if self.mode == "socket" and not self.app_token:
            raise SetupError("Socket Mode needs SLACK_APP_TOKEN (an app-level token with connections:write)")
        if self.mode == "http" and not self.signing_secret:
            raise SetupError("HTTP mode needs SLACK_SIGNING_SECRET (or set SLACK_APP_TOKEN for Socket Mode)")
        url = api_url or config.slack.api_url or SLACK_API_URL
        self.api_url = url if url.endswith("/") else url + "/"
        self.host, self.port = host, config.slack.http_port if port is None else port
        self.policy, self.poll_s = policy or RetryPolicy(), poll_s
        self._runtime: Runtime | None = runtime
        self._own_runtime = runtime is None  # given one: it is the caller's to start and close
        self._ctx: BotContext | None = None
        self._http: web.AppRunner | None = None
        self._socket: AsyncSocketModeHandler | None = None

    def attach(self, runtime: Runtime) -> None:
        """Use this started runtime (shared with the HTTP API) instead of opening one."""
        self._runtime, self._own_runtime = runtime, False

    @property
    def context(self) -> BotContext:
        """What the listeners share (tests hold a request open through it)."""
        assert self._ctx is not None, "not started"
        return self._ctx

    @property
    def loops(self) -> list[WakeableLoop]:
        """The loops that wake on their own: the supervisor's, the notifier's, the cards' (tests count wake-ups)."""
        return [self.runtime.ticks, self.context.notifier.loop, self.context.cards.loop]

    @property
    def runtime(self) -> Runtime:
        assert self._runtime is not None, "the bot is not started"
        return self._runtime

    @property
    def url(self) -> str:
        """Where Slack posts in HTTP mode."""
        return f"http://{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{self.port}{EVENTS_PATH}"

    async def __aenter__(self) -> SlackBot:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _client(self, *, retries: bool) -> AsyncWebClient:
        # The notifier and the cards retry on their own schedule (stored with each notice): no hidden retries.
        handlers = [AsyncConnectionErrorRetryHandler(), AsyncRateLimitErrorRetryHandler(max_retry_count=1)]
        return AsyncWebClient(
            token=self.bot_token,
            base_url=self.api_url,
            timeout=HTTP_TIMEOUT_S,
            retry_handlers=handlers if retries else [],
        )

    async def start(self) -> None:
        if self._own_runtime:
            self._runtime = await Runtime.open(self.config)
        assert self._runtime is not None
        try:
            if self._own_runtime:
                await self._runtime.start()
            store, outage = self._runtime.store, Outage(self.policy)
            pacer = Pacer(slack_limits(self.config.slack))
            quiet = self._client(retries=False)
            safety_s = self.config.safety_poll_seconds
            cards = CardSync(
                store, quiet, pacer, outage, interval_s=self.config.slack.card_interval_s, safety_poll_s=safety_s
            )
            notifier = Notifier(
                store,
                quiet,
                pacer,
                outage=outage,
                policy=self.policy,
                poll_s=self.poll_s,
                safety_poll_s=safety_s,
                on_card=cards.posted,
                keep_s=self.config.slack.keep_notices_hours * 3600.0,
            )
            client = self._client(retries=True)
            self._ctx = BotContext(
                self._runtime,
                Handlers(self._runtime, SLACK),
                client,
                GroupDirectory(client),
                notifier,
                cards,
                aiohttp.ClientSession(),
                commands_at_once=self.config.slack.commands_at_once,
            )
            app = build_app(self._ctx, signing_secret=self.signing_secret if self.mode == "http" else None)
            await notifier.start()  # before Slack can send a command: its job's card is not missed
            cards.start()
            if self.mode == "socket":
                self._socket = AsyncSocketModeHandler(app, self.app_token)
                await self._socket.connect_async()  # type: ignore[no-untyped-call]
            else:
                await self._serve_http(app.web_app(path=EVENTS_PATH))
        except BaseException:
            await self.close()
            raise

    async def _serve_http(self, web_app: web.Application) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._http = web.AppRunner(web_app, access_log=None, shutdown_timeout=1.0)
        await self._http.setup()
        await web.SockSite(self._http, sock).start()

    async def close(self) -> None:
        """Stop listening, let deliveries under way finish, then close the runner (jobs keep running)."""
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
            self._socket = None
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
        if self._ctx is not None:
            await self._ctx.close()  # first: the commands under way still answer and wake the notifier
            await self._ctx.cards.close()
            await self._ctx.notifier.close()
            self._ctx = None
        if self._runtime is not None and self._own_runtime:
            await self._runtime.close()
            self._runtime = None


class RedactTokens(logging.Filter):
    """Slack tokens never reach a log, whatever a library prints at debug level."""

    TOKEN = re.compile(r"\b(xox[a-z]|xapp)-[A-Za-z0-9-]+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.TOKEN.search(message):
            record.msg, record.args = self.TOKEN.sub(r"\1-…", message), ()
        return True
