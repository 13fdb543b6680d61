"""From what is waiting to the requests that carry it: when a batch is due, which
visitors it takes, and how they are cut into request bodies.

:meth:`Planner.poll` says whether a batch is due (``batch_size`` visitors waiting, the
oldest waiting ``flush_interval`` seconds, a flush, a stop) and claims it;
:meth:`Planner.plan` turns the claim into :class:`Request` objects: a circuit that holds
the target back puts the claim back untouched; visitors beyond ``max_batch_bytes`` are
put back, due at once; a body over the event API's limit is halved until it fits, and a
single visitor that cannot fit is refused. :func:`halves` splits a request the endpoint
refused (400, 413, 422) to isolate the visitor at fault. Nothing here sends, sleeps or
reads a clock.
"""

from __future__ import annotations

import gzip as _gzip
from dataclasses import dataclass, replace
from typing import Any, Final

import msgspec

from xpevents._internal.cache import BoundedCache
from xpevents.errors import DispatchError
from xpevents.send.circuit import Circuits
from xpevents.send.endpoint import EndpointRouter
from xpevents.spool.base import Claim, ClaimQueue, Spool
from xpevents.spool.envelope import API_MAX_BYTES, Envelope, parse_envelope

__all__ = ["IDLE_POLL", "Planner", "Refusal", "Request", "halves"]

IDLE_POLL: Final = 1.0
"""Seconds a sender waits when nothing is queued (it is woken on enqueue anyway)."""
_GZIP_HEADERS: Final = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
_JSON_HEADERS: Final = {"Content-Type": "application/json"}


class Request:
    """One HTTP request to make: visitors of one envelope, their body, its headers.

    ``content`` and ``headers`` are filled by :meth:`Planner.compress` just before the
    request is sent.
    """

    __slots__ = (
        "body",
        "claim",
        "content",
        "envelope",
        "headers",
        "ids",
        "split",
        "started",
        "visitors",
    )

    def __init__(
        self,
        envelope: Envelope,
        ids: list[int | str],
        visitors: list[bytes],
        claim: Claim,
        body: bytes,
    ) -> None:
        self.envelope = envelope
        self.ids = ids
        self.visitors = visitors
        self.claim = claim
        self.body = body
        self.content: bytes | None = None
        self.headers: dict[str, str] = _JSON_HEADERS
        self.started = 0.0
        self.split = False
        """True for a half of a refused request (see :func:`halves`)."""

    @property
    def method(self) -> str:
        """``"POST"`` (``"GET"`` only for a raw GET event)."""
        return self.envelope.method

    @property
    def url(self) -> str:
        """The target URL."""
        return self.envelope.url

    def params(self) -> Any:
        """Query parameters of a raw GET event."""
        return msgspec.json.decode(self.body)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Visitors that cannot be sent at all, and why (they are dead-lettered)."""

    ids: list[int | str]
    visitors: list[bytes]
    error: DispatchError


def _bodies(
    envelope: Envelope,
    ids: list[int | str],
    visitors: list[bytes],
    claim: Claim,
    requests: list[Request],
    refused: list[Refusal],
) -> None:
    """Append the requests for ``visitors``, halving any body over the API's limit."""
    body = envelope.body(visitors)
    if len(body) <= API_MAX_BYTES:
        requests.append(Request(envelope, ids, visitors, claim, body))
    elif len(visitors) > 1:
        half = len(visitors) // 2
        _bodies(envelope, ids[:half], visitors[:half], claim, requests, refused)
        _bodies(envelope, ids[half:], visitors[half:], claim, requests, refused)
    else:
        error = DispatchError(
            f"a visitor of {len(body)} bytes exceeds the event API's "
            f"{API_MAX_BYTES}-byte request limit",
            reason="too_large",
            url=envelope.url,
        )
        refused.append(Refusal(ids, visitors, error))


def halves(request: Request) -> tuple[list[Request], list[Refusal]]:
    """The two requests that carry a refused request (400, 413, 422; 2+ visitors)."""
    requests: list[Request] = []
    refused: list[Refusal] = []
    half = len(request.visitors) // 2
    for ids, visitors in (
        (request.ids[:half], request.visitors[:half]),
        (request.ids[half:], request.visitors[half:]),
    ):
        _bodies(request.envelope, ids, visitors, request.claim, requests, refused)
    for follow_up in requests:
        follow_up.split = True
    return requests, refused


class Planner:
    """When a batch is due, and the requests that carry it.

    Args:
        queue: the sender's view of the spool (what waits, claims).
        store: the spool itself (claims put back with ``retry``).
        router: maps each event's URL to the URL actually posted to.
        circuits: the per-URL circuit breakers.
        batch_size, flush_interval, max_batch_bytes, lease, gzip: the dispatcher's
            options of those names; ``max_records``: the most visitors one claim takes.
    """

    def __init__(
        self,
        queue: ClaimQueue,
        store: Spool,
        router: EndpointRouter,
        circuits: Circuits,
        *,
        batch_size: int,
        flush_interval: float,
        max_batch_bytes: int,
        max_records: int,
        lease: float,
        gzip: bool,
    ) -> None:
        self.queue = queue
        self.store = store
        self.router = router
        self.circuits = circuits
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_batch_bytes = max_batch_bytes
        self.max_records = max_records
        self.lease = lease
        self.gzip = gzip
        self.wake_depth = 1
        """The queue depth at which a producer should wake a sender (a batch is full)."""
        self._parsed: BoundedCache[bytes, Envelope] = BoundedCache(256)
        self._claim_bytes = max_batch_bytes
        """The visitor bytes one claim asks for: the byte cap less the largest envelope
        overhead seen and a comma per visitor of 64 bytes or more, so that what is
        claimed fits one body and the tail is not put back (a write per batch)."""

    def poll(self, now: float, *, flushing: bool, stopping: bool) -> Claim | float:
        """A claimed batch that is due now, or how many seconds to wait (0: poll again)."""
        count, oldest, next_retry = self.queue.waiting(now=now)
        if not count:
            self.wake_depth = 1
            return IDLE_POLL if next_retry is None else min(IDLE_POLL, next_retry - now)
        due_at = (oldest if oldest is not None else now) + self.flush_interval
        if count < self.batch_size and not flushing and due_at > now and not stopping:
            self.wake_depth = max(1, self.batch_size - count)
            return due_at - now
        claim = self.queue.claim_batch(
            max_records=self.max_records,
            max_bytes=self._claim_bytes,
            lease=self.lease,
            now=now,
        )
        return 0.0 if claim is None else claim

    def plan(self, claim: Claim, now: float) -> tuple[list[Request], list[Refusal]]:
        """The requests that carry ``claim``, and the visitors that cannot be sent."""
        requests: list[Request] = []
        refused: list[Refusal] = []
        envelope = self._envelope(claim.envelope)
        if envelope is None:
            error = DispatchError("unreadable envelope in the spool", reason="invalid_envelope")
            refused.append(Refusal(claim.ids, claim.visitors, error))
            return requests, refused
        wait_until = self.circuits.gate(envelope.url, now)
        if wait_until is not None:
            # The target is failing: put the batch back, untouched, until the circuit
            # lets a probe through. This is not an attempt.
            self._put_back(claim, claim.ids, now, due=wait_until)
            return requests, refused
        if not envelope.batchable:
            for record_id, visitor in zip(claim.ids, claim.visitors, strict=True):
                _bodies(envelope, [record_id], [visitor], claim, requests, refused)
            return requests, refused
        cut = self._fitting(envelope, claim.visitors)
        if cut > self.batch_size and self.circuits.failing(envelope.url):
            # The target is failing: try it with one batch_size, not a byte-cap batch
            # (a backlog grows batches to max_batch_bytes again once it answers).
            cut = self.batch_size
        if cut < len(claim.visitors):
            self._put_back(claim, claim.ids[cut:], now, due=now)
        _bodies(envelope, claim.ids[:cut], claim.visitors[:cut], claim, requests, refused)
        return requests, refused

    def _fitting(self, envelope: Envelope, visitors: list[bytes]) -> int:
        """How many of ``visitors`` (at least one) fit in one body of ``max_batch_bytes``."""
        budget = self.max_batch_bytes - envelope.overhead()
        size = 0
        for index, visitor in enumerate(visitors):
            size += len(visitor) + (1 if index else 0)
            if size > budget and index:
                return index
        return len(visitors)

    def _put_back(self, claim: Claim, ids: list[int | str], now: float, *, due: float) -> None:
        self.store.retry(
            ids,
            attempts=claim.attempts,
            first_attempt_at=claim.first_attempt_at or now,
            next_attempt_at=due,
        )

    def _envelope(self, envelope: bytes) -> Envelope | None:
        """The parsed envelope, routed to the dispatcher's endpoint (cached)."""
        parsed = self._parsed.get(envelope)
        if parsed is None:
            try:
                parsed = parse_envelope(envelope)
            except ValueError:
                return None
            target = self.router.route(parsed.url)
            if target != parsed.url:
                parsed = replace(parsed, url=target)
            self._parsed.put(envelope, parsed)
            self._claim_bytes = max(
                self.max_batch_bytes // 2,  # an odd envelope must not shrink every claim
                min(
                    self._claim_bytes,
                    self.max_batch_bytes - parsed.overhead() - self.max_batch_bytes // 64,
                ),
            )
        return parsed

    def compress(self, request: Request) -> None:
        """Fill ``request.content`` and ``headers`` (gzip when configured). Idempotent.

        CPU-bound for big gzip bodies: an event-loop driver may run it in a thread.
        """
        if request.content is not None:
            return
        envelope = request.envelope
        if self.gzip:
            request.content = _gzip.compress(request.body, compresslevel=1, mtime=0)
            request.headers = (
                _GZIP_HEADERS
                if envelope.batchable
                else {**envelope.headers, "Content-Encoding": "gzip"}
            )
        else:
            request.content = request.body
            request.headers = _JSON_HEADERS if envelope.batchable else envelope.headers
