"""Where the visitors a :class:`~xpevents.spool.memory.MemorySpool` holds wait: ready
(one queue per envelope), leased to a sender, or scheduled for a retry.

A record is a plain tuple ``(id, visitor, enqueued_at, attempts, first_attempt_at)``.
A spool holds up to hundreds of thousands of them and builds one per visitor on the
claim path, where a NamedTuple (built through a Python-level ``__new__``) costs tens of
times more than a tuple display; so the fields are named by the index constants below,
or unpacked.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, Final, TypeAlias

from xpevents.spool.base import Claim, SpoolRecord

Incoming: TypeAlias = "deque[bytes | tuple[bytes, ...] | float]"
"""The memory spool's append deque: flat (envelope, visitor or visitors, enqueued_at)."""

__all__ = [
    "ATTEMPTS",
    "ENQUEUED_AT",
    "FIRST_ATTEMPT_AT",
    "ID",
    "VISITOR",
    "Holdings",
    "Rec",
    "RetrySchedule",
]

Rec = tuple[int, bytes, float, int, float | None]
"""A ready, leased or scheduled record: ``(id, visitor, enqueued_at, attempts,
first_attempt_at)``."""

ID: Final = 0
VISITOR: Final = 1
ENQUEUED_AT: Final = 2
ATTEMPTS: Final = 3
FIRST_ATTEMPT_AT: Final = 4


class RetrySchedule:
    """Records waiting for their next attempt, in groups (one per ``retry`` call and
    envelope) on a heap ordered by the time the group is due.

    Not thread-safe: the spool calls it under its lock.
    """

    __slots__ = ("_groups", "_seq")

    def __init__(self) -> None:
        # (due_at, tie-breaker, envelope, records oldest first)
        self._groups: list[tuple[float, int, bytes, list[Rec]]] = []
        self._seq = itertools.count()

    def __iter__(self) -> Iterator[Rec]:
        """Every scheduled record (in no particular order)."""
        for _, _, _, recs in self._groups:
            yield from recs

    def next_at(self) -> float | None:
        """When the first group is due, or ``None`` when nothing is scheduled."""
        return self._groups[0][0] if self._groups else None

    def add(self, due_at: float, envelope: bytes, recs: list[Rec]) -> None:
        """Schedule ``recs`` (all of ``envelope``) for ``due_at``."""
        heapq.heappush(self._groups, (due_at, next(self._seq), envelope, recs))

    def pop_due(self, now: float) -> list[tuple[bytes, list[Rec]]]:
        """Remove the groups due at ``now``; returns their ``(envelope, records)``.

        A list, not a generator: it runs on every claim, nearly always finding nothing.
        """
        groups = self._groups
        due = []
        while groups and groups[0][0] <= now:
            _, _, envelope, recs = heapq.heappop(groups)
            due.append((envelope, recs))
        return due

    def pop_oldest(self) -> Rec | None:
        """Remove the record enqueued first (to make room), or ``None`` when empty."""
        groups = self._groups
        index = -1
        for i, (_, _, _, recs) in enumerate(groups):
            if recs and (index < 0 or recs[0][ENQUEUED_AT] < groups[index][3][0][ENQUEUED_AT]):
                index = i
        if index < 0:
            return None
        recs = groups[index][3]
        rec = recs.pop(0)
        if not recs:
            groups.pop(index)
            heapq.heapify(groups)
        return rec

    def clear(self) -> None:
        """Forget every scheduled record."""
        self._groups.clear()


class Holdings:
    """The records drained from a spool's append deque and not yet settled.

    Each is in exactly one place: a ready queue (one per envelope, oldest first), the
    leases (claimed by a sender, until a time) or the retry schedule. The spool keeps
    the counts its bounds need (visitors and bytes held); this keeps the places. Not
    thread-safe: the spool calls it under its lock.
    """

    __slots__ = ("_ids", "_leased", "_next_sweep", "_ready", "ready_count", "scheduled")

    def __init__(self) -> None:
        self._ready: dict[bytes, deque[Rec]] = {}
        self.ready_count = 0
        """Records in the ready queues."""
        self._leased: dict[int | str, tuple[bytes, Rec, float]] = {}  # id: (envelope, rec, until)
        self._next_sweep = 0.0
        self.scheduled = RetrySchedule()
        self._ids = itertools.count(1)

    @property
    def leased(self) -> int:
        """Records leased to senders."""
        return len(self._leased)

    def __iter__(self) -> Iterator[Rec]:
        """Every record held: ready, leased and scheduled."""
        for queue in self._ready.values():
            yield from queue
        for _, rec, _ in self._leased.values():
            yield rec
        yield from self.scheduled

    def _queue(self, envelope: bytes) -> deque[Rec]:
        queue = self._ready.get(envelope)
        if queue is None:
            queue = self._ready[envelope] = deque()
        return queue

    def drain(self, incoming: Incoming) -> tuple[int, int, int]:
        """Give every entry of the append deque an id and a place in its ready queue.

        An entry is three items: envelope, the visitor's bytes (or a tuple of several
        visitors), enqueued_at. Returns ``(entries, visitors, bytes)`` drained.
        """
        ready = self._ready
        ids = self._ids
        entries = visitors_in = size = 0
        pop = incoming.popleft
        while incoming:  # producers extend by whole entries: three items or none
            envelope: Any = pop()
            payload: Any = pop()
            enqueued_at: Any = pop()
            queue = ready.get(envelope)
            if queue is None:
                queue = ready[envelope] = deque()
            if type(payload) is bytes:
                queue.append((next(ids), payload, enqueued_at, 0, None))
                size += len(payload)
                visitors_in += 1
            else:
                for visitor in payload:
                    queue.append((next(ids), visitor, enqueued_at, 0, None))
                    size += len(visitor)
                visitors_in += len(payload)
            entries += 1
        self.ready_count += visitors_in
        return entries, visitors_in, size

    def promote(self, now: float) -> None:
        """Move scheduled retries that are due, and expired leases, back to ready."""
        for envelope, recs in self.scheduled.pop_due(now):
            self._queue(envelope).extendleft(reversed(recs))  # older than anything fresh
            self.ready_count += len(recs)
        if self._leased and now >= self._next_sweep:
            expired = [key for key, (_, _, until) in self._leased.items() if until <= now]
            for key in expired:
                envelope, rec, _ = self._leased.pop(key)
                self._queue(envelope).appendleft(rec)
                self.ready_count += 1
            self._next_sweep = now + 1.0

    def oldest_ready(self) -> tuple[bytes, deque[Rec]] | None:
        """The envelope whose first ready record was enqueued earliest, and its queue."""
        best: deque[Rec] | None = None
        envelope = b""
        for env, queue in self._ready.items():
            if queue and (best is None or queue[0][ENQUEUED_AT] < best[0][ENQUEUED_AT]):
                best, envelope = queue, env
        return None if best is None else (envelope, best)

    def oldest_enqueued_at(self) -> float | None:
        """``enqueued_at`` of the oldest record held, or ``None`` when empty."""
        ready = self.oldest_ready()
        times = itertools.chain(
            () if ready is None else (ready[1][0][ENQUEUED_AT],),
            (rec[ENQUEUED_AT] for _, rec, _ in self._leased.values()),
            (rec[ENQUEUED_AT] for rec in self.scheduled),
        )
        return min(times, default=None)

    def lease(self, *, max_records: int, max_bytes: int, until: float) -> Claim | None:
        """Lease the oldest ready records of one envelope until ``until``."""
        ready = self.oldest_ready()
        if ready is None:
            return None
        envelope, queue = ready
        ids: list[int | str] = []
        visitors: list[bytes] = []
        enqueued: list[float] = []
        attempts = 0
        first: float | None = None
        total = 0
        leased = self._leased
        while queue and len(ids) < max_records:
            rec = queue[0]
            record_id, visitor, enqueued_at, rec_attempts, rec_first = rec
            size = len(visitor)
            if ids and total + size > max_bytes:
                break
            queue.popleft()
            total += size
            ids.append(record_id)
            visitors.append(visitor)
            enqueued.append(enqueued_at)
            if rec_attempts > attempts:
                attempts = rec_attempts
            if rec_first is not None and (first is None or rec_first < first):
                first = rec_first
            leased[record_id] = (envelope, rec, until)
        if not queue:
            del self._ready[envelope]
        self.ready_count -= len(ids)
        return Claim(envelope, ids, visitors, attempts, first, enqueued)

    def leased_records(self, claim: Claim) -> list[SpoolRecord]:
        """The records of ``claim`` still leased, as :class:`SpoolRecord` objects."""
        records = []
        for key in claim.ids:
            entry = self._leased.get(key)
            if entry is not None:
                record_id, visitor, enqueued_at, attempts, first_attempt_at = entry[1]
                records.append(
                    SpoolRecord(
                        record_id, claim.envelope, visitor, enqueued_at, attempts, first_attempt_at
                    )
                )
        return records

    def release(self, ids: Sequence[int | str]) -> list[tuple[bytes, Rec]]:
        """End the leases of ``ids``; returns ``(envelope, rec)`` of those still leased."""
        leased = self._leased
        settled = []
        for record_id in ids:
            entry = leased.pop(record_id, None)
            if entry is not None:
                settled.append((entry[0], entry[1]))
        return settled

    def retry(
        self,
        ids: Sequence[int | str],
        *,
        attempts: int,
        first_attempt_at: float,
        next_attempt_at: float,
    ) -> None:
        """End the leases of ``ids`` and schedule them for ``next_attempt_at``."""
        groups: dict[bytes, list[Rec]] = {}
        for envelope, (record_id, visitor, enqueued_at, _, _) in self.release(ids):
            groups.setdefault(envelope, []).append(
                (record_id, visitor, enqueued_at, attempts, first_attempt_at)
            )
        for envelope, recs in groups.items():
            self.scheduled.add(next_attempt_at, envelope, recs)

    def evict_oldest(self) -> bytes | None:
        """Remove the oldest record not in flight (ready first, then scheduled); returns
        its visitor, or ``None`` when every record held is leased."""
        ready = self.oldest_ready()
        if ready is None:
            rec = self.scheduled.pop_oldest()
            return None if rec is None else rec[VISITOR]
        envelope, queue = ready
        visitor = queue.popleft()[VISITOR]
        if not queue:
            del self._ready[envelope]
        self.ready_count -= 1
        return visitor

    def count_since(self, when: float) -> int:
        """Records held that were enqueued at or before ``when``."""
        return sum(1 for rec in self if rec[ENQUEUED_AT] <= when)

    def clear(self) -> list[bytes]:
        """Forget every record; returns their visitors."""
        dropped = [rec[VISITOR] for rec in self]
        self._ready.clear()
        self._leased.clear()
        self.scheduled.clear()
        self.ready_count = 0
        return dropped
