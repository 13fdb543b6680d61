"""The sender's view (:class:`~xpevents.spool.base.ClaimQueue`) of any spool.

:class:`~xpevents.spool.memory.MemorySpool` answers "what is waiting" and "give me a
batch" from its own structures; every other spool (SQLite, Redis, a user's) answers
through the :class:`~xpevents.spool.base.Spool` protocol, adapted here, so the send
stage has one way to read a queue.
"""

from __future__ import annotations

from xpevents.spool.base import BufferedSpool, Claim, Spool

__all__ = ["SpoolQueue"]


class SpoolQueue:
    """:class:`~xpevents.spool.base.ClaimQueue` over a :class:`~xpevents.spool.base.Spool`."""

    __slots__ = ("_buffered", "store")

    def __init__(self, store: Spool) -> None:
        self.store = store
        self._buffered = store if isinstance(store, BufferedSpool) else None

    def waiting(self, *, now: float) -> tuple[int, float | None, float | None]:
        """Visitors due now (at least 1 when any is), the oldest one's age, the next retry."""
        store = self.store
        due = store.next_due_at(now=now)
        if due is None:
            return 0, None, None
        if due > now:
            return 0, None, due
        stats = store.stats(now=now)
        return max(1, stats.depth - stats.leased), stats.oldest_enqueued_at, None

    def claim_batch(
        self, *, max_records: int, max_bytes: int, lease: float, now: float
    ) -> Claim | None:
        """The store's claim as one :class:`~xpevents.spool.base.Claim`."""
        records = self.store.claim(
            max_records=max_records, max_bytes=max_bytes, lease=lease, now=now
        )
        if not records:
            return None
        firsts = [r.first_attempt_at for r in records if r.first_attempt_at is not None]
        return Claim(
            records[0].envelope,
            [r.id for r in records],
            [r.visitor for r in records],
            max(r.attempts for r in records),
            min(firsts) if firsts else None,
            [r.enqueued_at for r in records],
        )

    def pending_since(self, when: float) -> int:
        """Visitors enqueued at or before ``when`` and not settled, buffered ones included.

        The store keeps no per-visitor index by time: when its oldest record is older
        than ``when``, everything it holds counts.
        """
        buffered = self._buffered.buffered if self._buffered is not None else 0
        stats = self.store.stats(now=when)
        oldest = stats.oldest_enqueued_at
        if oldest is None or oldest > when:
            return buffered
        return stats.depth + buffered
