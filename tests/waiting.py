"""Waiting on conditions with a deadline (never a bare sleep as synchronisation)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_until(predicate: Callable[[], Awaitable[Any]], within: float, what: str, every: float = 0.2) -> Any:
    """Poll an async predicate until it returns something truthy, or fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(every)


def wait_until_sync(predicate: Callable[[], Any], within: float, what: str, every: float = 0.1) -> Any:
    """`wait_until` for plain (threaded, requests-based) tests."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")
        time.sleep(every)


async def wait_for_state(store: Any, job_id: str, *states: Any, within: float = 30) -> Any:
    """The job, once it is in one of `states` (a request only wakes the supervisor's loop: the tick comes after
    the answer)."""

    async def there() -> Any:
        job = await store.require(job_id)
        return job if job.state in states else None

    return await wait_until(there, within, f"job {job_id} to be {'/'.join(str(s) for s in states)}", every=0.05)
