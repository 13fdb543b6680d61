"""When to retry a request, and how long to wait first.

One :class:`RetryPolicy` type serves every dispatcher; each dispatcher has its own
defaults (:data:`SYNC_RETRY` for the synchronous one, :data:`BACKGROUND_RETRY` for
the batching ones).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from xpevents._internal.validate import number
from xpevents.errors import ConfigError


class GiveUp(enum.StrEnum):
    """Why a transient failure is not retried again (the reason counted in ``failed``).

    A :class:`str` enum: ``GiveUp.ATTEMPTS_EXHAUSTED == "attempts_exhausted"``.
    """

    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    """``max_attempts`` requests were made."""
    RETRY_AGE_EXCEEDED = "retry_age_exceeded"
    """The next attempt would come later than ``max_retry_age`` after the first."""
    RETRY_AFTER_TOO_LONG = "retry_after_too_long"
    """The server asked to wait longer than ``max_retry_after``."""

    def explain(self, retry_after: float | None) -> str:
        """A short human-readable reason."""
        if self is GiveUp.ATTEMPTS_EXHAUSTED:
            return "no attempts left"
        if self is GiveUp.RETRY_AGE_EXCEEDED:
            return "retrying longer than max_retry_age"
        return f"Retry-After {retry_after} s is over max_retry_after"


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
    ) -> float | GiveUp:
        """Seconds to wait before the next attempt, or why to give up.

        Args:
            attempts: attempts made so far (>= 1).
            first_attempt_at: time of the first attempt.
            now: time now, on the same clock as ``first_attempt_at`` (the batching
                dispatchers use the wall clock, stored with the visitors in the spool;
                the synchronous one the monotonic clock).
            retry_after: the server's ``Retry-After`` in seconds, if it sent one.

        Returns:
            A delay in seconds (never shorter than ``retry_after``), or a
            :class:`GiveUp` reason (a ``str``): ``"attempts_exhausted"``,
            ``"retry_age_exceeded"`` or ``"retry_after_too_long"``.
        """
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return GiveUp.ATTEMPTS_EXHAUSTED
        if retry_after is not None and retry_after > self.max_retry_after:
            return GiveUp.RETRY_AFTER_TOO_LONG
        delay = self.backoff(attempts, rng)
        if retry_after is not None:
            delay = max(delay, retry_after)
        if self.max_retry_age is not None and (now - first_attempt_at) + delay > self.max_retry_age:
            return GiveUp.RETRY_AGE_EXCEEDED
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
