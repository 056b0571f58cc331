"""What a failed Slack call means for the next try: wait out a 429, back off from an outage, or give up."""

from __future__ import annotations

import asyncio
import enum
import random
from dataclasses import dataclass

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack.pacing import retry_after


class FailureKind(enum.Enum):
    RATE_LIMITED = "rate_limited"  # 429: wait Retry-After
    OUTAGE = "outage"  # 5xx, connection refused or cut, timeout, bad token: Slack (or the way to it) is down
    REJECTED = "rejected"  # Slack refused this one call (channel gone, bot not in it, bad blocks): few retries


# ok=false errors that say Slack or our credentials are in trouble, not this message
# a message that cannot be updated any more (deleted, or its channel gone or archived): nothing to retry
GONE_ERRORS = frozenset({"message_not_found", "cant_update_message", "channel_not_found", "is_archived"})
_OUTAGE_ERRORS = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "request_timeout",
        "service_unavailable",
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "team_access_not_granted",
        "missing_scope",
    }
)


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    error: str
    retry_after_s: float | None = None
    maybe_delivered: bool = False  # Slack may have done it before failing: look before sending again


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code
        error = (
            str(exc.response.get("error") or f"HTTP {status}")
            if isinstance(exc.response.data, dict)
            else f"HTTP {status}"
        )
        if status == 429:
            return Failure(FailureKind.RATE_LIMITED, error, retry_after(exc))
        if status >= 500:
            return Failure(FailureKind.OUTAGE, error, maybe_delivered=True)
        if error in _OUTAGE_ERRORS:
            return Failure(FailureKind.OUTAGE, error, maybe_delivered=error in ("internal_error", "fatal_error"))
        return Failure(FailureKind.REJECTED, error)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Failure(FailureKind.OUTAGE, f"cannot connect: {exc}")  # never reached Slack
    if isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | OSError | SlackClientError):
        return Failure(FailureKind.OUTAGE, f"{type(exc).__name__}: {exc}", maybe_delivered=True)
    return Failure(FailureKind.REJECTED, f"{type(exc).__name__}: {exc}", maybe_delivered=True)  # a bug of ours


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff, capped, with a little jitter so restarted bots don't retry in lockstep."""

    base_s: float = 1.0
    cap_s: float = 30.0
    jitter: float = 0.1
    max_rejected_attempts: int = 5  # then the notice is dropped (logged): a bad message must not block its job

    def backoff(self, failures: int) -> float:
        delay = min(self.cap_s, self.base_s * 2.0 ** max(failures - 1, 0))
        return float(delay * (1 + random.uniform(0, self.jitter)))


class Outage:
    """Slack (or the way to it) is failing: every caller waits until `until` (wall clock, like the outbox's
    next_attempt_at), and each new failure after that doubles the wait, up to the cap."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0
        self.until = 0.0

    def active(self, now: float) -> bool:
        return now < self.until

    def failed(self, now: float) -> float:
        """Record a failure; returns when to try again. Failures inside one waiting period count once."""
        if now >= self.until:
            self.failures += 1
            self.until = now + self.policy.backoff(self.failures)
        return self.until

    def succeeded(self) -> None:
        self.failures = 0
