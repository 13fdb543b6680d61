"""The ``dispatch_event`` hot path: encode once, file under an envelope, offer, wake.

It runs in the caller's thread (the user's request) for every impression and
conversion, so it does no I/O with the memory spool, takes no lock in the common case,
and never raises: an event it cannot take goes to :class:`~xpevents.dispatch.drops.Drops`
(counted with its reason, logged, handed to ``on_drop``).

Visitors are encoded here, once, with msgspec, and never re-encoded: a sender joins the
bytes of visitors that share an envelope into one body. Envelopes are cached by the
event's URL and project-level values, so a steady stream of one project's events
encodes its envelope once.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from xpevents._internal.cache import BoundedCache
from xpevents.dispatch.drops import Drops
from xpevents.dispatch.gate import RefusalGate
from xpevents.errors import ConfigError
from xpevents.events.model import DEFAULT_HEADERS
from xpevents.events.wire import EncodedEvent, EventHead
from xpevents.send.endpoint import validate_url
from xpevents.spool.base import Spool
from xpevents.spool.envelope import (
    ENVELOPE_KEYS,
    batch_envelope,
    encode,
    raw_envelope,
    visitor_count,
)
from xpevents.spool.memory import MemorySpool
from xpevents.stats import StatsRecorder

__all__ = ["Enqueuer"]

_ENCODE_ERRORS: Final = (TypeError, ValueError, OverflowError, msgspec.EncodeError)
# A payload with exactly these keys and "visitors" (8 keys) has a cacheable envelope.
_head_values: Final = operator.itemgetter(*ENVELOPE_KEYS)
_now: Final = time.time

Unit = tuple[bytes, list[bytes]]
"""An envelope and the encoded visitors filed under it."""


def _noop() -> None:
    return None


class Enqueuer:
    """Turns events into spool entries, in the caller's thread.

    Args:
        owner: the dispatcher class, for messages.
        store: the spool; ``memory`` is the same object when it is the memory spool.
        recorder: the dispatcher's counters.
        drops: counts, logs and reports refused events.
        batch_size: a sender is woken when this many visitors wait (durable spools).
        overflow: the memory spool's overflow policy (names the drop reason).
        wake: wakes a sender (a batch is full, or the queue was empty).
    """

    _memory_offer: Callable[[bytes, Sequence[bytes], float], int] | None

    def __init__(
        self,
        *,
        owner: str,
        store: Spool,
        memory: MemorySpool | None,
        recorder: StatsRecorder,
        drops: Drops,
        batch_size: int,
        overflow: str,
        wake: Callable[[], object] = _noop,
    ) -> None:
        self.owner = owner
        self.store = store
        self.memory = memory
        self.recorder = recorder
        self.batch_size = batch_size
        self.full_reason = "block_timeout" if overflow == "block" else "queue_full"
        self.drops = drops
        self.wake = wake
        self.closed = False
        self.wake_depth = 1
        """The queue depth at which to wake a sender (set by the planner's poll)."""
        self._envelopes: BoundedCache[tuple[Any, ...], tuple[bytes, Any, Any]] = BoundedCache(256)
        self._heads: dict[EventHead, bytes] = {}
        """Envelopes of our own builders' events, by their (immutable) head."""
        self._memory_offer = memory.offer if memory is not None else None
        self.gate: RefusalGate | None = None
        """Lets our client skip building events the full queue refuses (``drop_newest``,
        no ``on_drop`` callback to hand them to)."""
        if memory is not None and overflow == "drop_newest" and drops.on_drop is None:
            self.gate = RefusalGate(memory, drops)
        self.reset_after_fork()

    def reset_after_fork(self) -> None:
        """State that does not survive a fork: the wake-up counter."""
        self._unsignalled = 0
        self.wake_depth = 1
        if self.gate is not None:
            self.gate.reset_after_fork()

    def enqueue(self, event: Any) -> None:
        """Queue ``event``'s visitors; wake a sender when needed. Never raises.

        Our own client's events come already encoded
        (:class:`~xpevents.events.wire.EncodedEvent`): with the memory spool they run in
        this one method (envelope lookup, offer, wake). Any other event API payload
        (the official SDK's) is read, encoded and offered by :meth:`_enqueue_payload`.
        """
        try:
            if type(event) is EncodedEvent:
                wire = event.wire
                if wire is not None and event.url is event.head.url and not self.closed:
                    envelope = self._heads.get(event.head)
                    if envelope is None:
                        envelope = self._head_envelope(event)
                    if envelope is not None:
                        offer = self._memory_offer
                        if offer is None:
                            self._append(event, envelope, (wire,))
                            return
                        size = offer(envelope, (wire,), _now())  # self._offer, inlined
                        if not size:
                            self.drops.refuse(event, 1, self.full_reason)
                            if self.gate is not None:
                                self.gate.shut = True  # the client asks before building
                        elif size == 1 or size == self.wake_depth:
                            self.wake()  # the queue was empty (start the timer) or a batch is full
                        return
            self._enqueue_payload(event)
        except Exception as exc:  # never let a dispatcher bug reach the caller
            self.drops.refuse(event, 1, "internal_error", exc)

    def _enqueue_payload(self, event: Any) -> None:
        """:meth:`enqueue` for any event but our own encoded ones (may raise)."""
        try:
            params = event.params
            url = event.url
            verb = event.http_verb
        except AttributeError:
            self.drops.refuse(event, 1, "closed" if self.closed else "invalid_event")
            return
        visitors = params.get("visitors") if type(params) is dict else None
        if type(visitors) is not list or not visitors or verb != "POST":
            self._enqueue_raw(event, url, verb, params)
            return
        envelope = self._envelope(event, url, params, visitors)
        if envelope is None:  # refused (closed, invalid URL, not serialisable)
            return
        try:
            encoded = [encode(visitor) for visitor in visitors]
        except _ENCODE_ERRORS as exc:
            self.drops.refuse(event, len(visitors), "serialize", exc)
            return
        self._offer(event, envelope, encoded)

    def _offer(self, event: Any, envelope: bytes, encoded: Sequence[bytes]) -> None:
        offer = self._memory_offer
        if offer is None:
            self._append(event, envelope, encoded)
            return
        size = offer(envelope, encoded, _now())
        if not size:
            self.drops.refuse(event, len(encoded), self.full_reason)
        elif size == 1 or size == self.wake_depth or len(encoded) > 1:
            self.wake()  # the queue was empty (start the timer) or a batch is full

    def _head_envelope(self, event: EncodedEvent) -> bytes | None:
        """The envelope of a builder's events (first sight of its head), or ``None``
        when the event goes the general way (its URL is refused there, and counted)."""
        head = event.head
        try:
            validate_url(head.url, argument="event.url")
        except ConfigError:
            return None
        envelope = batch_envelope(head.url, head.fields())
        if len(self._heads) >= 256:
            self._heads.clear()
        self._heads[head] = envelope
        return envelope

    def _envelope(
        self, event: Any, url: Any, params: dict[str, Any], visitors: list[Any]
    ) -> bytes | None:
        """The envelope for the payload (cached), or ``None`` when the event is refused."""
        if self.closed:
            self.drops.refuse(event, len(visitors), "closed")
            return None
        if len(params) == 8:
            try:
                head = _head_values(params)
                cached = self._envelopes.get((url, head))  # TypeError: an unhashable value
            except (KeyError, TypeError):
                cached = None
            # 1 == True: reuse only when the two flags are the very same objects
            if cached is not None and cached[1] is head[5] and cached[2] is head[6]:
                return cached[0]
        return self._new_envelope(event, url, params, len(visitors))

    def _enqueue_raw(self, event: Any, url: object, verb: object, params: Any) -> None:
        if self.closed:
            self.drops.refuse(event, visitor_count(params), "closed")
            return
        unit = self._raw(event, url, verb, params)
        if unit is None:
            return
        envelope, encoded = unit
        offer = self._memory_offer
        if offer is None:
            self._append(event, envelope, encoded)
        elif offer(envelope, encoded, _now()):
            self.wake()
        else:
            self.drops.refuse(event, 1, self.full_reason)

    def _new_envelope(
        self, event: Any, url: object, params: dict[str, Any], visitors: int
    ) -> bytes | None:
        try:
            validate_url(url, argument="event.url")
        except ConfigError as exc:
            self.drops.refuse(event, visitors, "invalid_url", exc)
            return None
        assert isinstance(url, str)
        try:
            # The event's own URL is stored; `endpoint` is applied when sending, so a
            # spooled backlog follows a changed endpoint after a restart.
            envelope = batch_envelope(url, params)
        except _ENCODE_ERRORS as exc:
            self.drops.refuse(event, visitors, "serialize", exc)
            return None
        if len(params) == 8:
            try:
                head = _head_values(params)
                self._envelopes.put((url, head), (envelope, head[5], head[6]))
            except (KeyError, TypeError):
                pass
        return envelope

    def _raw(self, event: Any, url: object, verb: object, params: Any) -> Unit | None:
        """A payload that is not in the event API format: one unit, sent as-is."""
        try:
            validate_url(url, argument="event.url")
        except ConfigError as exc:
            self.drops.refuse(event, 1, "invalid_url", exc)
            return None
        assert isinstance(url, str)
        method = verb.upper() if isinstance(verb, str) else verb
        if method not in ("POST", "GET") or (method == "GET" and not isinstance(params, dict)):
            self.drops.refuse(event, 1, "invalid_event", ValueError(f"http_verb={verb!r}"))
            return None
        try:
            headers = getattr(event, "headers", None)
            header_map = {str(k): str(v) for k, v in (headers or DEFAULT_HEADERS).items()}
            body = encode(params)
        except (AttributeError, *_ENCODE_ERRORS) as exc:
            self.drops.refuse(event, 1, "serialize", exc)
            return None
        return raw_envelope(method, url, header_map), [body]

    def _append(self, event: Any, envelope: bytes, encoded: Sequence[bytes]) -> None:
        """A spool that is not the memory spool (durable or custom)."""
        n = len(encoded)
        try:
            self.store.append([(envelope, visitor) for visitor in encoded], now=_now())
        except Exception as exc:
            self.drops.refuse(event, n, "spool_error", exc)
            return
        recorder = self.recorder
        with recorder.lock:
            recorder.calls += 1
            recorder.visitors += n
            recorder.enqueued += n
            self._unsignalled += n
            wake = self._unsignalled == n or self._unsignalled >= self.batch_size
            if wake:
                self._unsignalled = 0
        if wake:
            self.wake()
