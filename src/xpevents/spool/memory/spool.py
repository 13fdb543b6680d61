"""The in-memory spool: bounded, fast, not durable (``memory://``).

It implements the :class:`~xpevents.spool.base.Spool` protocol, plus a faster path
that :class:`~xpevents.BatchDispatcher` uses when the spool is this one:

* :meth:`MemorySpool.offer` is the enqueue path. In the common case it is one
  ``deque.append`` of ``(envelope, visitors, enqueued_at)`` (atomic under the GIL, no
  lock); the lock is taken only when the spool is full (``drop_oldest`` / ``block``)
  or when an event carries several visitors.
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

import heapq
import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Final

from xpevents._internal.validate import choice, optional_callable, positive_int, positive_seconds
from xpevents.spool.base import Claim, DeadLetter, SpoolRecord, SpoolStats

__all__ = ["OVERFLOW_POLICIES", "MemorySpool"]

OVERFLOW_POLICIES: Final = ("drop_newest", "drop_oldest", "block")

# A ready/scheduled record: (id, visitor, enqueued_at, attempts, first_attempt_at)
_Rec = tuple[int, bytes, float, int, float | None]


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
        # (envelope, visitors, enqueued_at) appended without the lock
        self._incoming: deque[tuple[bytes, Sequence[bytes], float]] = deque()
        self._incoming_extra = 0  # visitors beyond one per entry still in _incoming
        self._entries_in = 0  # entries drained from _incoming, ever
        self._visitors_in = 0  # visitors drained from _incoming, ever
        self._held = 0  # visitors drained and not yet settled
        self._held_bytes = 0
        self._ready: dict[bytes, deque[_Rec]] = {}
        self._ready_count = 0
        self._leased: dict[int | str, tuple[bytes, _Rec, float]] = {}
        self._next_sweep = 0.0
        self._scheduled: list[tuple[float, int, bytes, list[_Rec]]] = []
        self._scheduled_count = 0
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._dead: deque[DeadLetter] = deque()
        self._dead_by_reason: Counter[str] = Counter()
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
        if n == 1 and len(incoming) + self._incoming_extra + self._held < self.max_events:
            incoming.append((envelope, visitors, now))
            return len(incoming) or 1  # a sender may have drained it already
        return self._offer_slow(envelope, visitors, now)

    def _offer_slow(self, envelope: bytes, visitors: Sequence[bytes], now: float) -> int:
        n = len(visitors)
        if n > self.max_events or n == 0:
            return 0
        if (
            self.overflow == "drop_newest"
            and len(self._incoming) + self._incoming_extra + self._held + n > self.max_events
        ):
            # Full: refuse without the lock, so a producer that keeps calling while the
            # queue is full never contends with the senders for it.
            return 0
        evicted: list[bytes] = []
        with self._lock:
            room = self.max_events - n
            if self._depth_locked() > room:
                if self.overflow == "drop_newest":
                    return 0
                if self.overflow == "drop_oldest":
                    self._drain_locked()
                    while self._held > room and self._evict_oldest_locked(evicted):
                        pass
                    if self._held > room:  # everything left is in flight
                        self._release_evicted(evicted)
                        return 0
                else:  # block
                    deadline = None
                    while self._depth_locked() > room and not self._closed:
                        current = time.monotonic()
                        if deadline is None:
                            deadline = current + self.block_timeout
                        remaining = deadline - current
                        if remaining <= 0:
                            return 0
                        self._blocked += 1
                        try:
                            self._room.wait(remaining)
                        finally:
                            self._blocked -= 1
                    if self._closed:
                        return 0
            self._incoming_extra += n - 1
            self._incoming.append((envelope, visitors, now))
            size = len(self._incoming) or 1
        self._release_evicted(evicted)
        return size

    def _release_evicted(self, evicted: list[bytes]) -> None:
        callback = self.on_evict
        if callback is not None:
            for visitor in evicted:
                callback(visitor, "queue_full_oldest")

    def _depth_locked(self) -> int:
        return len(self._incoming) + self._incoming_extra + self._held

    def _evict_oldest_locked(self, evicted: list[bytes]) -> bool:
        """Remove the oldest visitor that is not in flight; False when there is none."""
        best: deque[_Rec] | None = None
        best_env = b""
        for env, queue in self._ready.items():
            if queue and (best is None or queue[0][2] < best[0][2]):
                best, best_env = queue, env
        if best is not None:
            rec = best.popleft()
            if not best:
                del self._ready[best_env]
            self._ready_count -= 1
        else:
            group_index = -1
            for index, (_, _, _, recs) in enumerate(self._scheduled):
                if recs and (group_index < 0 or recs[0][2] < self._scheduled[group_index][3][0][2]):
                    group_index = index
            if group_index < 0:
                return False
            recs = self._scheduled[group_index][3]
            rec = recs.pop(0)
            self._scheduled_count -= 1
            if not recs:
                self._scheduled.pop(group_index)
                heapq.heapify(self._scheduled)
        self._held -= 1
        self._held_bytes -= len(rec[1])
        self._evicted["queue_full_oldest"] += 1
        evicted.append(rec[1])
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
        incoming = self._incoming
        if not incoming:
            return
        ready = self._ready
        ids = self._ids
        entries = visitors_in = size = 0
        pop = incoming.popleft
        while incoming:
            envelope, visitors, enqueued_at = pop()
            queue = ready.get(envelope)
            if queue is None:
                queue = ready[envelope] = deque()
            for visitor in visitors:
                queue.append((next(ids), visitor, enqueued_at, 0, None))
                size += len(visitor)
            entries += 1
            visitors_in += len(visitors)
        self._incoming_extra -= visitors_in - entries
        self._entries_in += entries
        self._visitors_in += visitors_in
        self._held += visitors_in
        self._held_bytes += size
        self._ready_count += visitors_in

    def _promote_locked(self, now: float) -> None:
        """Move scheduled retries that are due, and expired leases, back to ready."""
        scheduled = self._scheduled
        while scheduled and scheduled[0][0] <= now:
            _, _, envelope, recs = heapq.heappop(scheduled)
            queue = self._ready.get(envelope)
            if queue is None:
                queue = self._ready[envelope] = deque()
            queue.extendleft(reversed(recs))  # older than anything fresh
            self._scheduled_count -= len(recs)
            self._ready_count += len(recs)
        if self._leased and now >= self._next_sweep:
            expired = [key for key, (_, _, until) in self._leased.items() if until <= now]
            for key in expired:
                envelope, rec, _ = self._leased.pop(key)
                queue = self._ready.get(envelope)
                if queue is None:
                    queue = self._ready[envelope] = deque()
                queue.appendleft(rec)
                self._ready_count += 1
            self._next_sweep = now + 1.0

    def waiting(self, *, now: float) -> tuple[int, float | None, float | None]:
        """``(visitors ready to send, enqueued_at of the oldest of them, next retry time)``."""
        with self._lock:
            self._drain_locked()
            self._promote_locked(now)
            oldest: float | None = None
            for queue in self._ready.values():
                if queue and (oldest is None or queue[0][2] < oldest):
                    oldest = queue[0][2]
            next_at = self._scheduled[0][0] if self._scheduled else None
            return self._ready_count, oldest, next_at

    def claim_batch(
        self, *, max_records: int, max_bytes: int, lease: float, now: float
    ) -> Claim | None:
        """Lease the oldest ready visitors of one envelope (see :meth:`claim`)."""
        with self._lock:
            self._drain_locked()
            self._promote_locked(now)
            best: deque[_Rec] | None = None
            envelope = b""
            for env, queue in self._ready.items():
                if queue and (best is None or queue[0][2] < best[0][2]):
                    best, envelope = queue, env
            if best is None:
                return None
            ids: list[int | str] = []
            visitors: list[bytes] = []
            enqueued: list[float] = []
            attempts = 0
            first: float | None = None
            total = 0
            until = now + lease
            leased = self._leased
            while best and len(ids) < max_records:
                rec = best[0]
                size = len(rec[1])
                if ids and total + size > max_bytes:
                    break
                best.popleft()
                total += size
                ids.append(rec[0])
                visitors.append(rec[1])
                enqueued.append(rec[2])
                if rec[3] > attempts:
                    attempts = rec[3]
                if rec[4] is not None and (first is None or rec[4] < first):
                    first = rec[4]
                leased[rec[0]] = (envelope, rec, until)
            if not best:
                del self._ready[envelope]
            self._ready_count -= len(ids)
            return Claim(envelope, ids, visitors, attempts, first, enqueued)

    def claim(
        self, *, max_records: int, max_bytes: int, lease: float, now: float
    ) -> list[SpoolRecord]:
        """Lease up to ``max_records`` due records of ONE envelope, oldest first."""
        batch = self.claim_batch(max_records=max_records, max_bytes=max_bytes, lease=lease, now=now)
        if batch is None:
            return []
        records = []
        with self._lock:
            for record_id in batch.ids:
                entry = self._leased.get(record_id)
                if entry is not None:
                    rec = entry[1]
                    records.append(
                        SpoolRecord(rec[0], batch.envelope, rec[1], rec[2], rec[3], rec[4])
                    )
        return records

    def _settle_locked(self, ids: Sequence[int | str]) -> list[tuple[bytes, _Rec]]:
        leased = self._leased
        settled = []
        for record_id in ids:
            entry = leased.pop(record_id, None)
            if entry is not None:
                settled.append((entry[0], entry[1]))
        return settled

    def _freed_locked(self, settled: list[tuple[bytes, _Rec]]) -> None:
        self._held -= len(settled)
        self._held_bytes -= sum(len(rec[1]) for _, rec in settled)
        if self._blocked:
            self._room.notify_all()

    def ack(self, ids: Sequence[int | str]) -> None:
        """The records were delivered: forget them."""
        with self._lock:
            self._freed_locked(self._settle_locked(ids))

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
            groups: dict[bytes, list[_Rec]] = {}
            for envelope, rec in self._settle_locked(ids):
                groups.setdefault(envelope, []).append(
                    (rec[0], rec[1], rec[2], attempts, first_attempt_at)
                )
            for envelope, recs in groups.items():
                heapq.heappush(self._scheduled, (next_attempt_at, next(self._seq), envelope, recs))
                self._scheduled_count += len(recs)

    def dead_letter(self, ids: Sequence[int | str], *, reason: str, now: float) -> None:
        """Move the records to the dead letters with ``reason``."""
        with self._lock:
            settled = self._settle_locked(ids)
            self._freed_locked(settled)
            for envelope, rec in settled:
                if self.max_dead_letters == 0:
                    self._evicted["max_dead_letters"] += 1
                    continue
                if len(self._dead) >= self.max_dead_letters:
                    old = self._dead.popleft()
                    self._dead_by_reason[old.reason] -= 1
                    self._evicted["max_dead_letters"] += 1
                self._dead.append(DeadLetter(rec[0], envelope, rec[1], reason, now, rec[3]))
                self._dead_by_reason[reason] += 1

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
        return len(self._incoming) + self._incoming_extra + self._held

    def counts(self) -> tuple[int, int, int]:
        """``(entries ever appended, visitors ever appended, visitors held now)``."""
        with self._lock:
            incoming = len(self._incoming)
            extra = self._incoming_extra
            return (
                self._entries_in + incoming,
                self._visitors_in + incoming + extra,
                incoming + extra + self._held,
            )

    def pending_since(self, when: float) -> int:
        """Visitors held that were enqueued at or before ``when`` (an O(depth) scan)."""
        with self._lock:
            count = sum(len(v) for _, v, t in self._incoming if t <= when)
            for queue in self._ready.values():
                count += sum(1 for rec in queue if rec[2] <= when)
            count += sum(1 for _, rec, _ in self._leased.values() if rec[2] <= when)
            for _, _, _, recs in self._scheduled:
                count += sum(1 for rec in recs if rec[2] <= when)
            return count

    def stats(self, *, now: float) -> SpoolStats:
        """Depth, bytes, oldest record, dead letters and evictions."""
        with self._lock:
            self._drain_locked()
            oldest: float | None = None
            for queue in self._ready.values():
                if queue and (oldest is None or queue[0][2] < oldest):
                    oldest = queue[0][2]
            for _, rec, _ in self._leased.values():
                if oldest is None or rec[2] < oldest:
                    oldest = rec[2]
            for _, _, _, recs in self._scheduled:
                for rec in recs:
                    if oldest is None or rec[2] < oldest:
                        oldest = rec[2]
            return SpoolStats(
                depth=self._held,
                bytes=self._held_bytes,
                leased=len(self._leased),
                oldest_enqueued_at=oldest,
                dead_letters=MappingProxyType(+self._dead_by_reason),
                evicted=MappingProxyType(+self._evicted),
            )

    def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters kept, for inspection."""
        with self._lock:
            return list(itertools.islice(self._dead, limit))

    def replay_dead_letters(self, *, reason: str | None = None, now: float) -> int:
        """Put dead letters (of ``reason``, or all) back in the queue; returns how many."""
        with self._lock:
            keep: deque[DeadLetter] = deque()
            replay: list[DeadLetter] = []
            for letter in self._dead:
                (replay if reason is None or letter.reason == reason else keep).append(letter)
            self._dead = keep
            for letter in replay:
                self._dead_by_reason[letter.reason] -= 1
        for letter in replay:
            self.offer(letter.envelope, (letter.visitor,), now)
        return len(replay)

    def purge_dead_letters(self, *, reason: str | None = None) -> int:
        """Delete dead letters (of ``reason``, or all); returns how many."""
        with self._lock:
            before = len(self._dead)
            self._dead = deque(d for d in self._dead if reason is not None and d.reason != reason)
            self._dead_by_reason = Counter(d.reason for d in self._dead)
            return before - len(self._dead)

    def clear(self) -> list[bytes]:
        """Forget every record (waiting, leased, scheduled); return their visitors."""
        with self._lock:
            self._drain_locked()
            dropped = [rec[1] for queue in self._ready.values() for rec in queue]
            dropped += [rec[1] for _, rec, _ in self._leased.values()]
            dropped += [rec[1] for _, _, _, recs in self._scheduled for rec in recs]
            self._ready.clear()
            self._leased.clear()
            self._scheduled.clear()
            self._ready_count = self._scheduled_count = 0
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
