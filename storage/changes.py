"""In-process change signal: wakes whoever waits for the store to change (notifier, cards, API and web streams).

Every committed write of the `JobStore` bumps `seq`. A loop that has work only when something changed waits with
`await changes.wait(seen, timeout=safety_poll_s)` instead of polling the database on a short timer; the timeout is
the slow safety poll for changes this process cannot see (another process, a restart).
"""

from __future__ import annotations

import asyncio


class Changes:
    def __init__(self) -> None:
        self.seq = 0
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        """Something was committed: wake every waiter."""
        self.seq += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self, seen: int, timeout: float | None = None) -> int:  # noqa: ASYNC109 (the safety poll)
        """Return at once if `seq` moved past `seen`, else when it does or after `timeout` s; returns `seq`."""
        if self.seq != seen:
            return self.seq
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)
        return self.seq
