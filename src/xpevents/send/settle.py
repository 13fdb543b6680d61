"""What an answer means for the visitors a request carried: ack, retry or dead letter.

:meth:`Settler.settle` takes the :class:`~xpevents.send.outcome.Verdict` on one request
and acts on the spool:

* delivered: ack, count, ``on_success``; the target's circuit closes;
* a refusal that names the batch (400 and 422: something in it is invalid; 413: it is
  too big): the two halves come back to be sent next, depth first, so the bisection
  isolates the visitor at fault (at most ``2n - 1`` requests for ``n`` visitors) and
  only that visitor is dead-lettered; the others are delivered. Each split is counted
  (``stats().splits``);
* other permanent answers (401, 403, 404, 3xx...): dead letter, not retried;
* transient (408, 429, 5xx, timeout, network): the retry is scheduled in the spool with
  backoff and ``Retry-After``, or, when the retry policy gives up (attempts, age, a
  ``Retry-After`` over its cap), the visitors are dead-lettered with that reason.

Every time is the caller's ``now`` (wall-clock seconds, stored with the visitors); the
module never reads a clock, sends or sleeps, so it is tested with a fake spool and a
fake clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from xpevents._internal.redact import redact_url
from xpevents.errors import DispatchError
from xpevents.send.circuit import Circuits
from xpevents.send.outcome import Outcome, Verdict
from xpevents.send.planner import Refusal, Request, halves
from xpevents.send.retry import GiveUp, RetryPolicy
from xpevents.spool.base import Spool
from xpevents.stats import StatsRecorder

__all__ = ["SPLIT_STATUSES", "Settler"]

logger = logging.getLogger("xpevents.dispatch")


SPLIT_STATUSES: Final = frozenset({400, 413, 422})
"""Refusals that name the batch's content: a request with 2+ visitors is halved."""


def _noop() -> None:
    return None


class Settler:
    """Settle requests: the spool, the counters, the circuits and the user callbacks.

    Args:
        store: the spool the visitors were claimed from.
        recorder: the dispatcher's counters.
        retry: when and how long to wait before another attempt.
        circuits: the per-URL circuit breakers.
        on_success: ``on_success(visitors)`` after each delivered request.
        on_failure: ``on_failure(visitors, error)`` for each batch dead-lettered.
        settled: called after anything settled (a waiting flush looks again).
    """

    def __init__(
        self,
        store: Spool,
        recorder: StatsRecorder,
        retry: RetryPolicy,
        circuits: Circuits,
        *,
        on_success: Callable[[list[bytes]], object] | None = None,
        on_failure: Callable[[list[bytes], DispatchError], object] | None = None,
        settled: Callable[[], object] = _noop,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.retry = retry
        self.circuits = circuits
        self.on_success = on_success
        self.on_failure = on_failure
        self.settled = settled

    def begin(self, request: Request, now: float) -> None:
        """Count the attempt (and the request in flight) just before sending it."""
        assert request.content is not None, "compress the request first"
        request.started = now
        self.recorder.record_attempt(len(request.content), retry=request.claim.attempts > 0)

    def abandon(self, request: Request) -> None:
        """The send was cancelled (shutdown): the lease expires, the visitors stay."""
        self.recorder.record_done()

    def settle(self, request: Request, verdict: Verdict, now: float) -> list[Request]:
        """Act on ``verdict`` for ``request``; return the requests to send next (halves)."""
        self.recorder.record_done()
        url = request.envelope.url
        if verdict.outcome is Outcome.DELIVERED:
            self._delivered(request, now)
            return []
        if verdict.outcome is Outcome.PERMANENT:
            self.circuits.succeeded(url, now)  # the endpoint answers; the batch is refused
            if verdict.status in SPLIT_STATUSES and len(request.visitors) > 1:
                return self._split(request, now)
            message = self._refused(request, verdict)
            self.dead_letter(
                request.ids, request.visitors, self._error(request, verdict, message), now
            )
            return []
        self._retry_later(request, verdict, now)
        return []

    def _delivered(self, request: Request, now: float) -> None:
        self.store.ack(request.ids)
        self.recorder.record_delivered(len(request.visitors), now=now)
        self.circuits.succeeded(request.envelope.url, now)
        self.recorder.run_callback(self.on_success, request.visitors)
        self.settled()

    def _split(self, request: Request, now: float) -> list[Request]:
        follow_ups, refused = halves(request)
        self.recorder.record_split()
        self.refuse(refused, now)
        return follow_ups

    @staticmethod
    def _refused(request: Request, verdict: Verdict) -> str:
        n = len(request.visitors)
        if verdict.status == 413 and n == 1:
            return f"a single visitor of {len(request.body)} bytes was refused with HTTP 413"
        if verdict.status in SPLIT_STATUSES and n == 1 and request.split:
            return (
                f"a visitor to {redact_url(request.envelope.url)}, isolated by splitting its "
                f"batch, was refused: {verdict.detail}; not retried"
            )
        shown = redact_url(request.envelope.url)
        return f"{n} visitor(s) to {shown} refused: {verdict.detail}; not retried"

    def _retry_later(self, request: Request, verdict: Verdict, now: float) -> None:
        claim = request.claim
        attempts = claim.attempts + 1
        url = request.envelope.url
        first = claim.first_attempt_at if claim.first_attempt_at is not None else request.started
        delay = self.retry.next_delay(
            attempts=attempts, first_attempt_at=first, now=now, retry_after=verdict.retry_after
        )
        self.circuits.failed(url, now, retry_after=verdict.retry_after, detail=verdict.detail)
        self.recorder.record_error(f"request to {redact_url(url)} failed: {verdict.detail}")
        if isinstance(delay, GiveUp):
            n = len(request.visitors)
            message = (
                f"{n} visitor(s) to {redact_url(url)} given up after {attempts} attempt(s): "
                f"{verdict.detail}; {delay.explain(verdict.retry_after)}"
            )
            error = self._error(request, verdict, message, reason=delay.value)
            self.dead_letter(request.ids, request.visitors, error, now)
            return
        self.store.retry(
            request.ids, attempts=attempts, first_attempt_at=first, next_attempt_at=now + delay
        )
        self.settled()

    @staticmethod
    def _error(
        request: Request, verdict: Verdict, message: str, *, reason: str | None = None
    ) -> DispatchError:
        return DispatchError(
            message,
            reason=verdict.reason if reason is None else reason,
            url=redact_url(request.envelope.url),
            status=verdict.status,
            response_excerpt=verdict.excerpt,
            attempts=request.claim.attempts + 1,
        )

    def refuse(self, refused: list[Refusal], now: float) -> None:
        """Dead-letter visitors that cannot be sent at all."""
        for refusal in refused:
            self.dead_letter(refusal.ids, refusal.visitors, refusal.error, now)

    def dead_letter(
        self, ids: list[int | str], visitors: list[bytes], error: DispatchError, now: float
    ) -> None:
        """Move visitors to the spool's dead letters; count, log and report them.

        A visitor that was sent carries the attempts made (``error.attempts``, the failed
        one included); one refused before any send (``error.attempts`` 0: too large, an
        unreadable envelope) keeps the count stored with it.
        """
        attempts = error.attempts if error.attempts > 0 else None
        self.store.dead_letter(ids, reason=error.reason, now=now, attempts=attempts)
        self.recorder.record_failed(error.reason, len(ids), str(error))
        logger.warning("%s (dead-lettered)", error)
        self.recorder.run_callback(self.on_failure, visitors, error)
        self.settled()
