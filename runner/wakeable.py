"""A loop that sleeps until the store changes, it is woken, or its timeout passes (the notifier's, the cards' and
the supervisor's shared shape: no work, no wake-ups but the slow safety poll)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from storage.changes import Changes

log = logging.getLogger(__name__)


class WakeableLoop:
    """Runs `step` again and again. `step` returns how long it may sleep at most (None: the safety poll);
    a store change or `wake()` ends the sleep early. `wakeups` counts the runs of `step` (tests read it)."""

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[float | None]],
        changes: Changes,
        safety_poll_s: float,
        *,
        busy_ignores_changes: bool = False,
    ) -> None:
        self.name, self._step, self._changes, self.safety_poll_s = name, step, changes, safety_poll_s
        self.busy_ignores_changes = busy_ignores_changes  # a step that set its own pace keeps it (its own
        # writes must not wake it again and again)
        self.wakeups = 0
        self._woken = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        self._woken.set()

    async def close(self) -> None:
        self._closing = True
        self._woken.set()
        if self._task is not None:
            await self._task
            self._task = None

    def _closed(self) -> bool:
        return self._closing

    async def _run(self) -> None:
        while True:
            self._woken.clear()
            seen = self._changes.seq
            self.wakeups += 1
            timeout: float | None = None
            try:
                timeout = await self._step()
            except Exception:
                log.exception("%s failed", self.name)
            if self._closed():
                return
            busy = timeout is not None
            timeout = self.safety_poll_s if timeout is None else min(max(timeout, 0.0), self.safety_poll_s)
            if busy and self.busy_ignores_changes:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), timeout)
                continue
            changed = asyncio.create_task(self._changes.wait(seen, timeout))
            woken = asyncio.create_task(self._woken.wait())
            await asyncio.wait({changed, woken}, return_when=asyncio.FIRST_COMPLETED)
            for task in (changed, woken):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(changed, woken, return_exceptions=True)
