"""Staying inside Slack's rate limits: token buckets a little under Slack's tiers, and Retry-After honoured.

Slack answers a call over its limit with HTTP 429 and `Retry-After: <s>`. Every Web API call the bot makes on its
own (notices, cards, uploads) goes through one `Pacer`, so a burst of jobs is spread out before Slack has to say
no, and after a 429 no call of that method (for chat.postMessage: in that channel) goes out until Retry-After has
passed. Limits: https://api.slack.com/apis/rate-limits (tier 2 ~20/min, tier 3 ~50/min, tier 4 ~100/min;
chat.postMessage ~1/s per channel with short bursts).

The two the bot spends most on are set from the config (`slack_limits`): chat.postMessage "allows one message
per second per channel, while also allowing short bursts" (docs.slack.dev/reference/methods/chat.postMessage),
paced at exactly `post_per_channel_per_min`; chat.update is "Tier 3: 50+ per minute", counted per app per
workspace, not per channel (docs.slack.dev/reference/methods/chat.update): no more than `update_per_min` in any
minute, all channels together, and progress updates leave a reserve of it for end states.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from slack_sdk.errors import SlackApiError

from runner.config import SlackConfig

T = TypeVar("T")


@dataclass(frozen=True)
class Limit:
    """`burst` calls at once, refilled at `burst / per_s` calls a second; with `window`: at most `burst` calls
    in any `per_s` seconds (Slack's "N a minute"), of which calls taken with `urgent=False` leave `reserve`."""

    burst: int
    per_s: float
    window: bool = False
    reserve: int = 0


OTHER_LIMITS: dict[str, Limit] = {  # chat.postMessage and chat.update: slack_limits
    "conversations.history": Limit(5, 7.5),  # 40/min, tier 3
    "conversations.replies": Limit(5, 7.5),
    "files.getUploadURLExternal": Limit(10, 7.5),  # 80/min, tier 4 is 100
    "files.completeUploadExternal": Limit(10, 7.5),
    "views.publish": Limit(10, 7.5),
    "usergroups.list": Limit(2, 6.0),  # 20/min, tier 2
    "*": Limit(2, 6.0),
}
PER_CHANNEL = frozenset({"chat.postMessage"})
WINDOW_MARGIN_S = 1.0  # a call reaches Slack a little after we count it: count it a little longer
END_RESERVE = 0.4  # of the chat.update budget kept for end states (20 of 50: 20 cards may end at once)


def slack_limits(config: SlackConfig) -> dict[str, Limit]:
    """Every limit, chat.postMessage and chat.update at the configured rates."""
    per_update = config.update_per_min
    return {
        **OTHER_LIMITS,
        "chat.postMessage": Limit(1, 60.0 / config.post_per_channel_per_min),
        "chat.update": Limit(int(per_update), 60.0, window=True, reserve=int(per_update * END_RESERVE)),
    }


SLACK_LIMITS = slack_limits(SlackConfig())


class _Bucket:
    def __init__(self, limit: Limit, now: float) -> None:
        self.limit = limit
        self.capacity, self.rate = float(limit.burst), limit.burst / limit.per_s
        self.tokens, self.stamp = self.capacity, now
        self.sent: deque[float] = deque()  # window limits: when the calls of the last window went out
        self.blocked_until = 0.0
        self.reserved = limit.reserve  # of a window, kept for urgent calls (keep_for_urgent lowers it)
        self.lock = asyncio.Lock()

    def refill(self, now: float) -> None:
        if now > self.stamp:  # the stamp lies ahead while a 429 holds the bucket
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def delay(self, now: float, urgent: bool = True) -> float:
        """Seconds until a call may go out (0: now)."""
        if self.limit.window:
            span = self.limit.per_s + WINDOW_MARGIN_S
            while self.sent and self.sent[0] <= now - span:
                self.sent.popleft()
            room = self.limit.burst - (0 if urgent else self.reserved)
            over = len(self.sent) - room  # this many must leave the window first
            wait_token = 0.0 if over < 0 else self.sent[over] + span - now
        else:
            self.refill(now)
            wait_token = 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate
        return max(wait_token, self.blocked_until - now, 0.0)

    def take(self, now: float) -> None:
        if self.limit.window:
            self.sent.append(now)
        else:
            self.tokens -= 1.0


class Pacer:
    def __init__(self, limits: Mapping[str, Limit] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
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
            bucket.take(self._clock())

    def try_take(self, method: str, channel: str | None = None, *, urgent: bool = True) -> bool:
        """Take a token if one is there now (a budget to spend on the most useful calls first); a call that is
        not `urgent` leaves the limit's reserve for those that are."""
        bucket = self._bucket(method, channel)
        if bucket.lock.locked() or bucket.delay(self._clock(), urgent) > 0:
            return False
        bucket.take(self._clock())
        return True

    def keep_for_urgent(self, method: str, calls: int) -> None:
        """Keep `calls` of `method`'s window (at most its limit's reserve) for urgent calls: room for the ends
        that may come, and the rest of the budget for progress."""
        bucket = self._bucket(method, None)
        bucket.reserved = max(0, min(calls, bucket.limit.reserve))

    def hold(self, method: str, channel: str | None, seconds: float) -> None:
        """Slack said 429: no call of `method` (in `channel`) for `seconds`, then one, then at the sustained rate
        (Slack's Retry-After is the time until its own bucket holds one call again)."""
        bucket = self._bucket(method, channel)
        bucket.blocked_until = max(bucket.blocked_until, self._clock() + seconds)
        bucket.tokens, bucket.stamp = 1.0, bucket.blocked_until
        bucket.sent.clear()

    async def call(
        self,
        method: str,
        fn: Callable[[], Awaitable[T]],
        *,
        channel: str | None = None,
        also: tuple[str, ...] = (),
        taken: bool = False,
    ) -> T:
        """Run one Web API call (`fn`) when `method` (and the methods in `also`) may go; a 429 holds the method.
        `taken`: the token of `method` was taken already (try_take)."""
        for name in (method, *also)[1 if taken else 0 :]:
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
