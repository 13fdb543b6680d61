"""What an answer (or the lack of one) means for the visitors a request carried.

One classifier for every dispatcher, as httpx maps httpcore's exceptions at a single
boundary: :func:`of_response` reads a status, its ``Retry-After`` and a body excerpt;
:func:`of_error` maps a transport exception. Both return a :class:`Verdict`, which
the send state machine (:mod:`xpevents.send.settle`) and the synchronous dispatcher act
on.

An exception that is neither an httpx timeout nor an httpx transport error comes from
a user-supplied client or transport misbehaving. What it means is the caller's choice,
made once and on purpose (``unexpected=``):

* the batching dispatchers treat it as **transient**: the visitors stay in the spool and
  are retried with backoff, so a broken custom transport delays events but never loses
  them, and the retry policy's age limit still ends it;
* the synchronous :class:`~xpevents.DefaultEventDispatcher` treats it as **permanent**:
  the caller's thread is waiting, and a client that raises something unexpected is
  likely to raise it again, so the call ends at once with reason ``"error"`` instead of
  spending the caller's deadline on retries.
"""

from __future__ import annotations

import email.utils
import enum
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

import httpx

__all__ = [
    "EXCERPT_CHARS",
    "Outcome",
    "ResponseLike",
    "Verdict",
    "classify_status",
    "of_error",
    "of_response",
    "parse_retry_after",
]

EXCERPT_CHARS: Final = 500
"""Characters of a refused response's body kept for error messages and stats."""


class Outcome(enum.Enum):
    """What an answer (or the lack of one) means for the events in the request."""

    DELIVERED = "delivered"
    """Any 2xx: the events are delivered."""
    TRANSIENT = "transient"
    """408, 429, 5xx, timeouts and network errors: try again later."""
    PERMANENT = "permanent"
    """Any other answer (400, 401, 413, 3xx...): retrying cannot help."""


_TRANSIENT_4XX: Final = frozenset({408, 429})


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
    is missing or unreadable. ``now`` (wall clock) resolves an HTTP-date.
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


class ResponseLike(Protocol):
    """The parts of an HTTP response the classifier reads (``httpx.Response`` has them)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def text(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """The meaning of one answer.

    Attributes:
        outcome: delivered, transient (retry later) or permanent (give up).
        reason: the machine-readable reason counted in ``stats().failed``
            (``"http_503"``, ``"timeout"``, ``"network"``, ``"error"``).
        detail: a human-readable description (``"HTTP 503"``, ``"timed out (...)"``).
        status: the HTTP status, or ``None`` when there was no answer.
        retry_after: seconds the server asked to wait (transient answers only).
        excerpt: the start of a refused answer's body.
    """

    outcome: Outcome
    reason: str
    detail: str
    status: int | None = None
    retry_after: float | None = None
    excerpt: str = ""


def of_response(response: ResponseLike, *, now: float) -> Verdict:
    """The verdict for an answer; ``now`` (wall clock) resolves a dated ``Retry-After``."""
    status = response.status_code
    outcome = classify_status(status)
    if outcome is Outcome.DELIVERED:
        return Verdict(outcome, f"http_{status}", f"HTTP {status}", status)
    try:
        excerpt = response.text[:EXCERPT_CHARS]
    except Exception:  # a streamed or undecodable body
        excerpt = ""
    retry_after = None
    if outcome is Outcome.TRANSIENT:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now)
    return Verdict(outcome, f"http_{status}", f"HTTP {status}", status, retry_after, excerpt)


def of_error(error: BaseException, *, unexpected: Outcome) -> Verdict:
    """The verdict for a request that got no answer (see the module docstring)."""
    if isinstance(error, httpx.TimeoutException):
        return Verdict(Outcome.TRANSIENT, "timeout", f"timed out ({error!r})")
    if isinstance(error, httpx.TransportError):
        return Verdict(Outcome.TRANSIENT, "network", f"network error ({error!r})")
    return Verdict(unexpected, "error", f"unexpected error ({error!r})")
