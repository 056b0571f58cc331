"""uvicorn, run in the caller's event loop beside the Slack bot: `async with ApiServer(ctx, host, port):`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from types import TracebackType

import uvicorn

from bot.http.app import build_app
from bot.http.context import ApiContext

SHUTDOWN_GRACE_S = 2.0  # followers (SSE, logs) are cut after this on shutdown; they reconnect with Last-Event-ID


class _Server(uvicorn.Server):
    """uvicorn without its ten wake-ups a second (an idle bot should cost nothing): the Date header is refreshed
    once a second, and `close` wakes the loop at once."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_now = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # `trainbot serve` handles SIGINT/SIGTERM for the whole process (Slack, API, runtime)

    async def main_loop(self) -> None:
        ticks = 0
        while not await self.on_tick(ticks):  # a multiple of 10: on_tick refreshes the Date header
            ticks += 10
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exit_now.wait(), 1.0)


class ApiServer:
    def __init__(self, ctx: ApiContext, host: str, port: int) -> None:
        self.ctx, self.host, self.port = ctx, host, port
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def bind(self) -> None:
        """Take the address now (before jobs are recovered, say), so a taken one fails before anything starts."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno,
                f"the HTTP API cannot listen on {self.url}: {exc.strerror} (choose another "
                "address with --host/--port or [http] host/port)",
            ) from exc
        self.port = sock.getsockname()[1]
        self._sock = sock

    async def start(self) -> None:
        if self._sock is None:
            self.bind()
        sock, self._sock = self._sock, None
        assert sock is not None
        # X-Forwarded-For/-Proto are believed from `[http] trusted_proxies` only (uvicorn's default would believe
        # any process on this host): through one, the client is the proxy's client and the scheme its scheme
        trusted = list(self.ctx.config.http.trusted_proxies)
        config = uvicorn.Config(
            build_app(self.ctx),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
            server_header=False,
            proxy_headers=bool(trusted),
            forwarded_allow_ips=trusted,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                await self._task  # it failed: say why
                raise RuntimeError("the HTTP API stopped while starting")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            self._server.exit_now.set()
            await self._task
        self._server = self._task = None
