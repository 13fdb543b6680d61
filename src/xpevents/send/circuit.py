"""A circuit breaker per target URL: a failing endpoint is not hammered, and it does not
hold up batches bound for other targets.

After ``threshold`` consecutive failed requests to one URL its circuit **opens**: batches
for that URL are put back untouched (not counted as attempts) until a backoff expires
(full jitter between half and the whole of ``backoff_base * 2 ** (opens - 1)``, capped at
``backoff_max``; a ``Retry-After`` holds it open at least that long). Then it is
**half-open**: one batch goes through as a probe while the others wait
:data:`PROBE_WAIT` seconds. A success **closes** it (and forgets the URL); a failure
opens it again for longer.

Times are the caller's clock (wall-clock seconds in the dispatchers); nothing here reads
a clock or sleeps.

Each failure episode of a URL is logged twice: a WARNING at its first failed request
(ending with :attr:`Circuits.hint`, where to look meanwhile: ``stats()`` for a dispatcher
in your application, ``/metrics`` and ``/readyz`` for the relay) and a line when a request
succeeds again (INFO unless :attr:`Circuits.recovered_level` says otherwise; with the
count of :attr:`Circuits.waiting` visitors when that is set).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Final

from xpevents._internal.redact import redact_url
from xpevents.send.retry import RetryPolicy

__all__ = ["DEFAULT_HINT", "PROBE_WAIT", "Circuits"]

logger = logging.getLogger("xpevents.dispatch")

PROBE_WAIT: Final = 0.25
"""Seconds a batch waits while another batch probes a half-open circuit."""
DEFAULT_HINT: Final = "see stats()"
"""Where the failing line sends the reader, for a dispatcher in the application."""


class _Circuit:
    """Health of one target URL (guarded by the owner's lock)."""

    __slots__ = ("episode_started", "failures", "open_until", "opens", "probing")

    def __init__(self, now: float) -> None:
        self.failures = 0  # consecutive failed requests
        self.opens = 0  # consecutive times the circuit opened
        self.open_until = 0.0  # no request before this
        self.probing = False  # a half-open probe is in flight
        self.episode_started = now


class Circuits:
    """The circuits of every target URL a dispatcher sends to. Thread-safe.

    Args:
        threshold: consecutive failed requests that open a circuit.
        retry: the policy whose ``backoff_base``/``backoff_max`` time the open state
            and whose ``max_retry_after`` caps a ``Retry-After``.
        rng: the jitter's random source (tests pass a seeded one).

    Attributes (log wording only; they change nothing else):
        hint: the end of the failing line's parenthesis, where to look meanwhile
            (default :data:`DEFAULT_HINT`; the relay says ``/metrics`` and ``/readyz``).
        recovered_level: the level of the recovery line (default INFO).
        waiting: returns how many visitors wait to be sent, for the recovery line
            (``None``: not said; an exception or a ``None`` answer: not said either).
    """

    def __init__(
        self, threshold: int, retry: RetryPolicy, rng: random.Random | None = None
    ) -> None:
        self.threshold = threshold
        self.retry = retry
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._circuits: dict[str, _Circuit] = {}
        self.hint = DEFAULT_HINT
        self.recovered_level = logging.INFO
        self.waiting: Callable[[], int | None] | None = None

    def reset(self) -> None:
        """Forget every circuit, with a fresh lock and jitter source (a forked child)."""
        self._lock = threading.Lock()
        self._circuits = {}
        self._rng = random.Random()

    def gate(self, url: str, now: float) -> float | None:
        """``None`` if a request to ``url`` may go now, else when to try again."""
        with self._lock:
            circuit = self._circuits.get(url)
            if circuit is None:
                return None
            if circuit.open_until > now:
                return circuit.open_until
            if circuit.failures >= self.threshold:
                if circuit.probing:
                    return now + PROBE_WAIT
                circuit.probing = True  # half-open: this batch is the probe
            return None

    def failing(self, url: str) -> bool:
        """True while requests to ``url`` fail (since its last failure, until a success)."""
        return url in self._circuits

    def succeeded(self, url: str, now: float) -> None:
        """A request to ``url`` was answered in a way that says the endpoint works."""
        with self._lock:
            circuit = self._circuits.pop(url, None)
        if circuit is not None and circuit.failures:
            logger.log(
                self.recovered_level,
                "events to %s are delivered again after %d failed request(s) over %.1f s%s",
                redact_url(url),
                circuit.failures,
                now - circuit.episode_started,
                self._waiting_text(),
            )

    def _waiting_text(self) -> str:
        """``"; N visitor(s) waiting"`` when :attr:`waiting` tells, else ``""``."""
        if self.waiting is None:
            return ""
        try:
            n = self.waiting()
        except Exception:  # a log line never fails a send
            return ""
        return "" if n is None else f"; {n} visitor(s) waiting"

    def failed(
        self, url: str, now: float, *, retry_after: float | None = None, detail: str = ""
    ) -> None:
        """A request to ``url`` failed transiently (``detail`` says how)."""
        with self._lock:
            circuit = self._circuits.get(url)
            if circuit is None:
                circuit = self._circuits[url] = _Circuit(now)
            circuit.probing = False
            circuit.failures += 1
            first = circuit.failures == 1
            if circuit.failures >= self.threshold:
                circuit.opens += 1
                circuit.open_until = max(circuit.open_until, now + self._backoff(circuit.opens))
            if retry_after:
                wait = min(retry_after, self.retry.max_retry_after)
                circuit.open_until = max(circuit.open_until, now + wait)
        if first:
            logger.warning(
                "events to %s are failing (%s); retrying with backoff (one line per episode; %s)",
                redact_url(url),
                detail,
                self.hint,
            )

    def _backoff(self, opens: int) -> float:
        retry = self.retry
        ceiling = min(retry.backoff_max, retry.backoff_base * 2.0 ** min(opens - 1, 62))
        return self._rng.uniform(ceiling / 2, ceiling)

    def open_count(self, now: float) -> int:
        """Target URLs whose circuit currently holds sends back."""
        with self._lock:
            return sum(
                1
                for c in self._circuits.values()
                if c.failures >= self.threshold or c.open_until > now
            )
