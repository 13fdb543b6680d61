"""The in-memory spool: bounded, fast, not durable (``memory://``).

It implements the :class:`~xpevents.spool.base.Spool` protocol, plus a faster path
that :class:`~xpevents.BatchDispatcher` uses when the spool is this one:

* :meth:`MemorySpool.offer` is the enqueue path. In the common case it is one
  ``deque.extend`` of ``envelope, visitor, enqueued_at`` (three items, atomic under the
  GIL, no lock; none of them a container, so a queue of any length costs the garbage
  collector nothing); the lock is taken only when the spool is full (``drop_oldest``
  / ``block``) or when an event carries several visitors (then the second item is
  their tuple).
* :meth:`MemorySpool.claim_batch` leases the oldest visitors of one envelope and
  returns them as a :class:`Claim` (plain lists, no per-record objects).

Incoming entries are moved from the append deque into per-envelope ready queues under
the lock by whoever claims next, so the producer never contends with a sender for
more than a deque append.

The bound (``max_events`` visitors: waiting, leased and scheduled for retry) is
checked without a lock, so concurrent producers can overshoot it by at most one event
each. Leases only matter if a sender dies mid-send (they expire and the records are
claimable again).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any, Final

from xpevents._internal.validate import choice, optional_callable, positive_int, positive_seconds
from xpevents.spool.base import Claim, DeadLetter, SpoolRecord, SpoolStats
from xpevents.spool.memory.dead import DeadLetterBox
from xpevents.spool.memory.holdings import ENQUEUED_AT, VISITOR, Holdings, Incoming

__all__ = ["OVERFLOW_POLICIES", "MemorySpool"]

OVERFLOW_POLICIES: Final = ("drop_newest", "drop_oldest", "block")


class MemorySpool:
    """A bounded in-memory spool.

    Args:
        max_events: most visitors held (waiting, in flight or waiting for a retry).
            Default 10,000.
        overflow: what happens to a new event when the spool is full:
            ``"drop_newest"`` (default) refuses it; ``"drop_oldest"`` evicts the oldest
            visitors not in flight to make room; ``"block"`` waits up to
            ``block_timeout`` seconds for room, then refuses it.
        block_timeout: seconds ``"block"`` waits at most. Default 1.
        max_dead_letters: dead letters kept for inspection (oldest forgotten first,
            counted in ``stats().evicted["max_dead_letters"]``). Default 10,000.
        on_evict: ``on_evict(visitor, reason)`` for each visitor evicted by
            ``"drop_oldest"`` (reason ``"queue_full_oldest"``). Called outside the lock.

    Raises:
        ConfigError: an argument is invalid.
    """

    url = "memory://"
    durable = False

    def __init__(
        self,
        max_events: int = 10_000,
        overflow: str = "drop_newest",
        block_timeout: float = 1.0,
        *,
        max_dead_letters: int = 10_000,
        on_evict: Callable[[bytes, str], object] | None = None,
    ) -> None:
        owner = type(self).__name__
        self.max_events = positive_int("max_events", max_events, owner=owner)
        self.overflow = choice("overflow", overflow, OVERFLOW_POLICIES, owner=owner)
        self.block_timeout = positive_seconds(
            "block_timeout", block_timeout, owner=owner, allow_zero=True
        )
        self.max_dead_letters = positive_int(
            "max_dead_letters", max_dead_letters, owner=owner, minimum=0
        )
        self.on_evict = optional_callable("on_evict", on_evict, owner=owner)
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._blocked = 0
        # envelope, visitor (bytes) or visitors (tuple), enqueued_at: flat triples
        # appended with one extend, without the lock
        self._incoming: Incoming = deque()
        self._incoming_extra = 0  # visitors beyond one per entry still in _incoming
        self._entries_in = 0  # entries drained from _incoming, ever
        self._visitors_in = 0  # visitors drained from _incoming, ever
        self._held = 0  # visitors drained and not yet settled
        self._held_bytes = 0
        self._holdings = Holdings()  # where the drained visitors are
        self._dead = DeadLetterBox()
        self._evicted: Counter[str] = Counter()
        self._closed = False

    # -- enqueue -------------------------------------------------------------------

    def offer(self, envelope: bytes, visitors: Sequence[bytes], now: float) -> int:
        """Queue ``visitors`` (all under ``envelope``) unless the spool is full.

        Returns the number of entries in the append deque after the append (>= 1), or
        0 when the event was refused (``drop_newest``, or ``block`` timed out, or more
        visitors than ``max_events``). Under ``drop_oldest`` older visitors are evicted
        (reported through ``on_evict``) and the event is always accepted.
        """
        incoming = self._incoming
        n = len(visitors)
        if n == 1 and len(incoming) // 3 + self._incoming_extra + self._held < self.max_events:
            incoming.extend((envelope, visitors[0], now))
            return len(incoming) // 3 or 1  # a sender may have drained it already
        return self._offer_slow(envelope, visitors, now)

    def _offer_slow(self, envelope: bytes, visitors: Sequence[bytes], now: float) -> int:
        n = len(visitors)
        if n > self.max_events or n == 0:
            return 0
        if (
            self.overflow == "drop_newest"
            and len(self._incoming) // 3 + self._incoming_extra + self._held + n > self.max_events
        ):
            # Full: refuse without the lock, so a producer that keeps calling while the
            # queue is full never contends with the senders for it.
            return 0
        evicted: list[bytes] = []
        with self._lock:
            if self._make_room_locked(self.max_events - n, evicted):
                self._incoming_extra += n - 1
                payload = visitors[0] if n == 1 else tuple(visitors)
                self._incoming.extend((envelope, payload, now))
                size = len(self._incoming) // 3 or 1
            else:
                size = 0
        self._release_evicted(evicted)
        return size

    def _make_room_locked(self, room: int, evicted: list[bytes]) -> bool:
        """Apply the overflow policy until at most ``room`` visitors are held; False
        when the event must be refused."""
        if self._depth_locked() <= room:
            return True
        if self.overflow == "drop_newest":
            return False
        if self.overflow == "drop_oldest":
            self._drain_locked()
            while self._held > room and self._evict_oldest_locked(evicted):
                pass
            return self._held <= room  # False: everything left is in flight
        return self._wait_for_room_locked(room)

    def _wait_for_room_locked(self, room: int) -> bool:
        """``block``: wait up to ``block_timeout`` seconds for senders to settle records."""
        deadline = None
        while self._depth_locked() > room and not self._closed:
            current = time.monotonic()
            if deadline is None:
                deadline = current + self.block_timeout
            remaining = deadline - current
            if remaining <= 0:
                return False
            self._blocked += 1
            try:
                self._room.wait(remaining)
            finally:
                self._blocked -= 1
        return not self._closed

    def _release_evicted(self, evicted: list[bytes]) -> None:
        callback = self.on_evict
        if callback is not None:
            for visitor in evicted:
                callback(visitor, "queue_full_oldest")

    def _depth_locked(self) -> int:
        return len(self._incoming) // 3 + self._incoming_extra + self._held

    def _evict_oldest_locked(self, evicted: list[bytes]) -> bool:
        """Remove the oldest visitor that is not in flight; False when there is none."""
        visitor = self._holdings.evict_oldest()
        if visitor is None:
            return False
        self._held -= 1
        self._held_bytes -= len(visitor)
        self._evicted["queue_full_oldest"] += 1
        evicted.append(visitor)
        return True

    def append(self, entries: Sequence[tuple[bytes, bytes]], *, now: float) -> None:
        """Store ``(envelope, visitor)`` pairs (the :class:`Spool` protocol's append).

        Visitors refused because the spool is full are counted in
        ``stats().evicted["queue_full"]``.
        """
        for envelope, visitor in entries:
            if not self.offer(envelope, (visitor,), now):
                with self._lock:
                    self._evicted["queue_full"] += 1

    # -- claim and settle ------------------------------------------------------------

    def _drain_locked(self) -> None:
        if not self._incoming:
            return
        entries, visitors, size = self._holdings.drain(self._incoming)
        self._incoming_extra -= visitors - entries
        self._entries_in += entries
        self._visitors_in += visitors
        self._held += visitors
        self._held_bytes += size

    def waiting(self, *, now: float) -> tuple[int, float | None, float | None]:
        """``(visitors ready to send, enqueued_at of the oldest of them, next retry time)``."""
        with self._lock:
            self._drain_locked()
            holdings = self._holdings
            holdings.promote(now)
            ready = holdings.oldest_ready()
            oldest = None if ready is None else ready[1][0][ENQUEUED_AT]
            return holdings.ready_count, oldest, holdings.scheduled.next_at()

    def claim_batch(
        self, *, max_records: int, max_bytes: int, lease: float, now: float
    ) -> Claim | None:
        """Lease the oldest ready visitors of one envelope (see :meth:`claim`)."""
        with self._lock:
            self._drain_locked()
            self._holdings.promote(now)
            return self._holdings.lease(
                max_records=max_records, max_bytes=max_bytes, until=now + lease
            )

    def claim(
        self, *, max_records: int, max_bytes: int, lease: float, now: float
    ) -> list[SpoolRecord]:
        """Lease up to ``max_records`` due records of ONE envelope, oldest first."""
        batch = self.claim_batch(max_records=max_records, max_bytes=max_bytes, lease=lease, now=now)
        if batch is None:
            return []
        with self._lock:
            return self._holdings.leased_records(batch)

    def _freed_locked(self, count: int, size: int) -> None:
        self._held -= count
        self._held_bytes -= size
        if self._blocked:
            self._room.notify_all()

    def ack(self, ids: Sequence[int | str]) -> None:
        """The records were delivered: forget them."""
        with self._lock:
            settled = self._holdings.release(ids)
            self._freed_locked(len(settled), sum(len(rec[VISITOR]) for _, rec in settled))

    def retry(
        self,
        ids: Sequence[int | str],
        *,
        attempts: int,
        first_attempt_at: float,
        next_attempt_at: float,
    ) -> None:
        """Release the lease; the records are claimable again from ``next_attempt_at``."""
        with self._lock:
            self._holdings.retry(
                ids,
                attempts=attempts,
                first_attempt_at=first_attempt_at,
                next_attempt_at=next_attempt_at,
            )

    def dead_letter(
        self,
        ids: Sequence[int | str],
        *,
        reason: str,
        now: float,
        attempts: int | None = None,
    ) -> None:
        """Move the records to the dead letters with ``reason`` (and ``attempts`` made)."""
        with self._lock:
            settled = self._holdings.release(ids)
            self._freed_locked(len(settled), sum(len(rec[VISITOR]) for _, rec in settled))
            for envelope, (record_id, visitor, _, stored, _) in settled:
                made = stored if attempts is None else attempts
                letter = DeadLetter(record_id, envelope, visitor, reason, now, made)
                forgotten = self._dead.add(letter, keep=self.max_dead_letters)
                if forgotten:
                    self._evicted["max_dead_letters"] += forgotten

    def next_due_at(self, *, now: float) -> float | None:
        """Earliest time a record becomes claimable (``now`` if one is due), or None."""
        count, _, next_at = self.waiting(now=now)
        if count:
            return now
        return next_at

    # -- inspection --------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Visitors held: waiting, leased or scheduled for retry (no lock; approximate)."""
        return len(self._incoming) // 3 + self._incoming_extra + self._held

    def counts(self) -> tuple[int, int, int]:
        """``(entries ever appended, visitors ever appended, visitors held now)``."""
        with self._lock:
            incoming = len(self._incoming) // 3
            extra = self._incoming_extra
            return (
                self._entries_in + incoming,
                self._visitors_in + incoming + extra,
                incoming + extra + self._held,
            )

    def pending_since(self, when: float) -> int:
        """Visitors held that were enqueued at or before ``when`` (an O(depth) scan)."""
        with self._lock:
            entries = list(self._incoming)
            count = 0
            for index in range(2, len(entries), 3):
                enqueued_at: Any = entries[index]
                if enqueued_at <= when:
                    payload = entries[index - 1]
                    count += 1 if type(payload) is bytes else len(payload)  # type: ignore[arg-type]
            return count + self._holdings.count_since(when)

    def stats(self, *, now: float) -> SpoolStats:
        """Depth, bytes, oldest record, dead letters and evictions."""
        with self._lock:
            self._drain_locked()
            return SpoolStats(
                depth=self._held,
                bytes=self._held_bytes,
                leased=self._holdings.leased,
                oldest_enqueued_at=self._holdings.oldest_enqueued_at(),
                dead_letters=MappingProxyType(+self._dead.by_reason),
                evicted=MappingProxyType(+self._evicted),
            )

    def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters kept, for inspection."""
        with self._lock:
            return self._dead.oldest(limit)

    def replay_dead_letters(self, *, reason: str | None = None, now: float) -> int:
        """Put dead letters (of ``reason``, or all) back in the queue; returns how many."""
        with self._lock:
            replay = self._dead.take(reason)
        for letter in replay:
            self.offer(letter.envelope, (letter.visitor,), now)
        return len(replay)

    def purge_dead_letters(self, *, reason: str | None = None) -> int:
        """Delete dead letters (of ``reason``, or all); returns how many."""
        with self._lock:
            return self._dead.purge(reason)

    def clear(self) -> list[bytes]:
        """Forget every record (waiting, leased, scheduled); return their visitors."""
        with self._lock:
            self._drain_locked()
            dropped = self._holdings.clear()
            self._held = self._held_bytes = 0
            if self._blocked:
                self._room.notify_all()
            return dropped

    def reset_after_fork(self) -> None:
        """In a forked child: start empty, with fresh locks (the parent sends its own)."""
        on_evict = self.on_evict
        self._init_state()
        self.on_evict = on_evict

    def close(self) -> None:
        """Wake blocked producers (they give up). Records held are kept. Idempotent."""
        with self._lock:
            self._closed = True
            self._room.notify_all()

    def __repr__(self) -> str:
        return (
            f"MemorySpool(max_events={self.max_events}, overflow={self.overflow!r}, "
            f"depth={self.depth})"
        )
