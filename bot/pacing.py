"""Staying inside Slack's rate limits: token buckets a little under Slack's tiers, and Retry-After honoured.

Slack answers a call over its limit with HTTP 429 and `Retry-After: <s>`. Every Web API call the bot makes on its
own (notices, cards, uploads) goes through one `Pacer`, so a burst of jobs is spread out before Slack has to say
no, and after a 429 no call of that method (for chat.postMessage: in that channel) goes out until Retry-After has
passed. Limits: https://api.slack.com/apis/rate-limits (tier 2 ~20/min, tier 3 ~50/min, tier 4 ~100/min;
chat.postMessage ~1/s per channel with short bursts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from slack_sdk.errors import SlackApiError

T = TypeVar("T")


@dataclass(frozen=True)
class Limit:
    """`burst` calls at once, refilled at `burst / per_s` calls a second."""

    burst: int
    per_s: float


SLACK_LIMITS: dict[str, Limit] = {
    "chat.postMessage": Limit(4, 4.0),  # ~1/s per channel
    "chat.update": Limit(20, 25.0),  # 48/min in bursts of 20: tier 3 is 50 a minute and allows bursts
    "conversations.history": Limit(5, 7.5),  # 40/min, tier 3
    "conversations.replies": Limit(5, 7.5),
    "files.getUploadURLExternal": Limit(10, 7.5),  # 80/min, tier 4 is 100
    "files.completeUploadExternal": Limit(10, 7.5),
    "views.publish": Limit(10, 7.5),
    "usergroups.list": Limit(2, 6.0),  # 20/min, tier 2
    "*": Limit(2, 6.0),
}
PER_CHANNEL = frozenset({"chat.postMessage"})


class _Bucket:
    def __init__(self, limit: Limit, now: float) -> None:
        self.capacity, self.rate = float(limit.burst), limit.burst / limit.per_s
        self.tokens, self.stamp = self.capacity, now
        self.blocked_until = 0.0
        self.lock = asyncio.Lock()

    def refill(self, now: float) -> None:
        if now > self.stamp:  # the stamp lies ahead while a 429 holds the bucket
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def delay(self, now: float) -> float:
        """Seconds until a call may go out (0: now)."""
        self.refill(now)
        wait_token = 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate
        return max(wait_token, self.blocked_until - now, 0.0)


class Pacer:
    def __init__(self, limits: Mapping[str, Limit] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = dict(SLACK_LIMITS if limits is None else limits)
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def _bucket(self, method: str, channel: str | None) -> _Bucket:
        key = (method, (channel or "") if method in PER_CHANNEL else "")
        bucket = self._buckets.get(key)
        if bucket is None:
            limit = self.limits.get(method, self.limits.get("*", Limit(1, 1.0)))
            bucket = self._buckets[key] = _Bucket(limit, self._clock())
        return bucket

    async def wait(self, method: str, channel: str | None = None) -> None:
        """Wait for a token of `method` (first come, first served) and take it."""
        bucket = self._bucket(method, channel)
        async with bucket.lock:
            while (delay := bucket.delay(self._clock())) > 0:  # noqa: ASYNC110 (waits for time, not an event)
                await asyncio.sleep(delay)
            bucket.tokens -= 1.0

    def try_take(self, method: str, channel: str | None = None) -> bool:
        """Take a token if one is there now (a budget to spend on the most useful calls first)."""
        bucket = self._bucket(method, channel)
        if bucket.lock.locked() or bucket.delay(self._clock()) > 0:
            return False
        bucket.tokens -= 1.0
        return True

    def hold(self, method: str, channel: str | None, seconds: float) -> None:
        """Slack said 429: no call of `method` (in `channel`) for `seconds`, then one, then at the sustained rate
        (Slack's Retry-After is the time until its own bucket holds one call again)."""
        bucket = self._bucket(method, channel)
        bucket.blocked_until = max(bucket.blocked_until, self._clock() + seconds)
        bucket.tokens, bucket.stamp = 1.0, bucket.blocked_until

    async def call(self, method: str, fn: Callable[[], Awaitable[T]], *, channel: str | None = None,
                   also: tuple[str, ...] = (), taken: bool = False) -> T:
        """Run one Web API call (`fn`) when `method` (and the methods in `also`) may go; a 429 holds the method.
        `taken`: the token of `method` was taken already (try_take)."""
        for name in (method, *also)[1 if taken else 0:]:
            await self.wait(name, channel)
        try:
            return await fn()
        except SlackApiError as exc:
            if exc.response.status_code == 429:
                failed = method_of(exc) or method
                self.hold(failed, channel, retry_after(exc))
            raise


def retry_after(exc: SlackApiError) -> float:
    value = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
    try:
        return max(float(value), 1.0)
    except (TypeError, ValueError):
        return 1.0


def method_of(exc: SlackApiError) -> str | None:
    url = getattr(exc.response, "api_url", None)
    return str(url).rstrip("/").rsplit("/", 1)[-1] or None if url else None
