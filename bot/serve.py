"""`trainbot serve`: the HTTP API and (with Slack tokens) the Slack bot, over one runtime in one event loop.

The runtime (one store, one supervisor) is opened once; the Slack bot (bot/slack/bot.py) and the HTTP API and web
page (bot/http/) attach to it. Without Slack tokens the API runs alone. TRAINBOT_API_TOKENS: the API's tokens
(bot/http/auth.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys

from bot.chat.handlers import Handlers
from bot.http.auth import TOKENS_ENV, is_loopback, load_tokens
from bot.http.context import ApiContext
from bot.http.server import ApiServer
from bot.slack.bot import SLACK_SECRETS, RedactTokens, SetupError, SlackBot
from bot.words.config import config_error_text
from runner.config import Config, ConfigError
from runner.runtime import Runtime


async def serve(config: Config, bot: SlackBot | None, tokens: dict[str, str], host: str, port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime = await Runtime.open(config)
    try:
        api = ApiServer(ApiContext(runtime, Handlers(runtime), config, tokens), host, port)
        api.bind()  # a taken address ends it here, before any job is recovered or started
        await runtime.start()
        async with contextlib.AsyncExitStack() as stack:
            # the API first: building it (FastAPI, pydantic schemas) blocks the loop for a while, and Slack's
            # first commands must not wait for that
            await stack.enter_async_context(api)
            if bot is not None:
                bot.attach(runtime)
                await stack.enter_async_context(bot)
                where = f" on {bot.url}" if bot.mode == "http" else ""
                print(
                    f"trainbot: serving Slack in {bot.mode} mode{where}, Web API {bot.api_url}",
                    file=sys.stderr,
                    flush=True,
                )
            print(f"trainbot: HTTP API on {api.url} (docs: {api.url}/docs)", file=sys.stderr, flush=True)
            # What start-up built (modules, the apps, their schemas) lives as long as the process: out of the
            # collector's sight, a full collection no longer walks it in the middle of a request (API p99).
            gc.freeze()
            await stop.wait()
    finally:
        await runtime.close()
    return 0


def main(
    config: Config,
    *,
    api_url: str | None = None,
    slack_port: int | None = None,
    host: str | None = None,
    port: int | None = None,
) -> int:
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactTokens())
    host = host or config.http.host
    port = config.http.port if port is None else port
    # Read once and taken out of the environment: Bolt would read SLACK_BOT_TOKEN again (and log that it goes
    # unused beside our client), and nothing started later can inherit them.
    bot_token, app_token, secret = (os.environ.pop(name, None) for name in SLACK_SECRETS)
    try:
        tokens = load_tokens(config.http)
        bot = (
            SlackBot(
                config,
                api_url=api_url,
                port=slack_port,
                bot_token=bot_token,
                app_token=app_token,
                signing_secret=secret,
            )
            if (bot_token or app_token or secret)
            else None
        )
    except (SetupError, ConfigError) as exc:
        why = config_error_text(exc) if isinstance(exc, ConfigError) else str(exc)
        print(f"trainbot serve: {why}", file=sys.stderr)
        return 2
    if not tokens and not is_loopback(host):
        print(
            f"trainbot serve: binding {host} without API tokens would let anyone who can reach it start and stop "
            f"jobs: set {TOKENS_ENV} (`token=USER_ID,...`) or `[http] tokens_file`, or bind 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    try:
        return asyncio.run(serve(config, bot, tokens, host, port))
    except OSError as exc:  # an address in use or not ours: say which, not a traceback
        print(f"trainbot serve: {exc.strerror or exc}", file=sys.stderr)
        return 2
