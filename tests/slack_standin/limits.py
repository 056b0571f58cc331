"""Slack's rate limits per Web API method, and the token bucket and sliding window that enforce them."""

from __future__ import annotations

import collections
import math
import time

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
