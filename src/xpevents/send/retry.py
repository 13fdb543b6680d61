"""When to retry a request, and how long to wait first.

One :class:`RetryPolicy` type serves every dispatcher; each dispatcher has its own
defaults (:data:`SYNC_RETRY` for the synchronous one, :data:`BACKGROUND_RETRY` for
the batching ones).
"""

from __future__ import annotations

import email.utils
import enum
import math
import random
import time
from dataclasses import dataclass

from xpevents._internal.validate import number
from xpevents.errors import ConfigError


class Outcome(enum.Enum):
    """What an answer (or the lack of one) means for the events in the request."""

    DELIVERED = "delivered"
    """Any 2xx: the events are delivered."""
    TRANSIENT = "transient"
    """408, 429, 5xx, timeouts and network errors: try again later."""
    PERMANENT = "permanent"
    """Any other answer (400, 401, 413, 3xx...): retrying cannot help."""


_TRANSIENT_4XX = frozenset({408, 429})


def classify_status(status: int) -> Outcome:
    """Classify an HTTP status code."""
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status in _TRANSIENT_4XX or 500 <= status < 600:
        return Outcome.TRANSIENT
    return Outcome.PERMANENT


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delay in seconds, or an HTTP-date.

    Returns the number of seconds to wait (never negative), or ``None`` when the header
    is missing or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures (408, 429, 5xx, network errors) are retried.

    Args:
        max_attempts: total attempts per request, the first one included; ``None``
            means no attempt limit (then ``max_retry_age`` bounds retries).
        backoff_base: seconds; attempt *n* (n >= 1 retries) waits a random time in
            ``[0, min(backoff_max, backoff_base * 2 ** (n - 1))]`` (full jitter).
        backoff_max: cap of the backoff, in seconds.
        max_retry_after: the longest ``Retry-After`` honoured, in seconds. A server that
            asks for more is never retried earlier than it asked: the request fails
            with reason ``retry_after_too_long``.
        max_retry_age: seconds since the first attempt after which a request is no
            longer retried (``None``: no age limit).

    Synchronous defaults are :data:`SYNC_RETRY`; background (batching) defaults are
    :data:`BACKGROUND_RETRY`.
    """

    max_attempts: int | None = 3
    backoff_base: float = 0.2
    backoff_max: float = 1.0
    max_retry_after: float = 60.0
    max_retry_age: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts is not None and (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ConfigError(
                f"RetryPolicy(max_attempts={self.max_attempts!r}): must be an int >= 1 "
                "(1 = never retry) or None (no limit)"
            )
        number(
            "backoff_base", self.backoff_base, owner="RetryPolicy", minimum=0.0, allow_none=False
        )
        number("backoff_max", self.backoff_max, owner="RetryPolicy", minimum=0.0, allow_none=False)
        number(
            "max_retry_after",
            self.max_retry_after,
            owner="RetryPolicy",
            minimum=0.0,
            allow_none=False,
        )
        number(
            "max_retry_age", self.max_retry_age, owner="RetryPolicy", minimum=0.0, allow_none=True
        )
        if self.max_attempts is None and self.max_retry_age is None:
            raise ConfigError(
                "RetryPolicy(max_attempts=None, max_retry_age=None): retries would never "
                "end; set an attempt limit or a max_retry_age"
            )

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Full-jitter backoff before retry number ``retry_number`` (1 for the first retry)."""
        exponent = min(max(retry_number - 1, 0), 62)
        ceiling = min(self.backoff_max, self.backoff_base * (2.0**exponent))
        return (rng or random).uniform(0.0, ceiling)

    def next_delay(
        self,
        *,
        attempts: int,
        first_attempt_at: float,
        now: float,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float | str:
        """Seconds to wait before the next attempt, or the reason to give up.

        Args:
            attempts: attempts made so far (>= 1).
            first_attempt_at: monotonic time of the first attempt.
            now: monotonic time now.
            retry_after: the server's ``Retry-After`` in seconds, if it sent one.

        Returns:
            A delay in seconds (never shorter than ``retry_after``), or a reason string:
            ``"attempts_exhausted"``, ``"retry_age_exceeded"`` or ``"retry_after_too_long"``.
        """
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return "attempts_exhausted"
        if retry_after is not None and retry_after > self.max_retry_after:
            return "retry_after_too_long"
        delay = self.backoff(attempts, rng)
        if retry_after is not None:
            delay = max(delay, retry_after)
        if self.max_retry_age is not None and (now - first_attempt_at) + delay > self.max_retry_age:
            return "retry_age_exceeded"
        return delay


SYNC_RETRY = RetryPolicy(max_attempts=3, backoff_base=0.2, backoff_max=1.0, max_retry_after=60.0)
"""Defaults of :class:`~xpevents.DefaultEventDispatcher`: 3 attempts, 0.2 s base, 1 s cap."""

BACKGROUND_RETRY = RetryPolicy(
    max_attempts=None,
    backoff_base=0.5,
    backoff_max=30.0,
    max_retry_after=300.0,
    max_retry_age=3600.0,
)
"""Defaults of the batching dispatchers: no attempt limit, 0.5 s base, 30 s cap,
``Retry-After`` honoured up to 5 minutes, retries end after 1 hour."""
