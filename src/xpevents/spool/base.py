"""The spool: the queue behind a batching dispatcher, one interface for every backend.

A spool holds encoded visitors, each filed under an *envelope*: the bytes that identify
which visitors may share one request (the target URL plus account_id, project_id,
revision, client_name, client_version, anonymize_ip and enrich_decisions). Senders
claim a batch of visitors of one envelope with a lease, send it, then settle each
record: ``ack`` (delivered), ``retry`` (schedule another attempt; the schedule lives in
the spool so a restart does not reset backoff) or ``dead_letter`` (failed for good,
kept with its reason, inspectable and replayable).

Backends: :class:`~xpevents.spool.memory.MemorySpool` (``memory://``, the default,
not durable), ``sqlite:///path`` (durable, shared by the processes of one machine),
``redis://host:port/db?stream=NAME`` (durable, shared by many machines).

Times given to and returned by a spool are wall-clock seconds (``time.time()``), so
they keep their meaning across processes and restarts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

_EMPTY: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One visitor in the spool, as a sender sees it after ``claim``.

    Attributes:
        id: the backend's id for the record (int for memory/SQLite, str for Redis).
        envelope: the envelope bytes the visitor was appended under.
        visitor: the visitor, encoded once as JSON at enqueue; never altered.
        enqueued_at: when it was appended.
        attempts: delivery attempts made so far (0 for a fresh record).
        first_attempt_at: when the first attempt was made, or ``None``.
    """

    id: int | str
    envelope: bytes
    visitor: bytes
    enqueued_at: float
    attempts: int = 0
    first_attempt_at: float | None = None


@dataclass(slots=True)
class Claim:
    """Visitors of one envelope leased together (what a sender works on).

    Attributes:
        envelope: the envelope bytes they were appended under.
        ids: record ids, for ``ack`` / ``retry`` / ``dead_letter``.
        visitors: the encoded visitors, oldest first (same order as ``ids``).
        attempts: the most attempts any of them has had.
        first_attempt_at: the earliest first attempt among them, or ``None``.
        enqueued_at: ``enqueued_at`` of each record.
    """

    envelope: bytes
    ids: list[int | str]
    visitors: list[bytes]
    attempts: int
    first_attempt_at: float | None
    enqueued_at: list[float]


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """What a spool holds.

    Attributes:
        depth: records waiting or leased (not yet delivered or dead-lettered).
        bytes: encoded size of those records.
        leased: records currently claimed by a sender.
        oldest_enqueued_at: ``enqueued_at`` of the oldest record, or ``None`` if empty.
        dead_letters: dead-lettered records by reason.
        evicted: records removed by the size/age bounds, by reason
            (``max_spool_events``, ``max_spool_bytes``, ``max_event_age``).
        lost: visitors found lost after the fact, by reason: ``redis_reset`` (a Redis
            that came back without the spool's data), ``interval_window`` (the last
            group commit of ``durability="interval"`` before a crash).
    """

    depth: int = 0
    bytes: int = 0
    leased: int = 0
    oldest_enqueued_at: float | None = None
    dead_letters: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    evicted: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    lost: Mapping[str, int] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A visitor that failed for good, with why.

    ``attempts`` is the number of delivery attempts made (1 for a visitor refused at its
    first send, as with a 404; 0 for one never sent, as ``too_large``).
    """

    id: int | str
    envelope: bytes
    visitor: bytes
    reason: str
    failed_at: float
    attempts: int


@runtime_checkable
class Spool(Protocol):
    """The interface every spool backend implements. All methods are thread-safe."""

    url: str
    """The spool's URL (``memory://``, ``sqlite:///...``, ``redis://...``)."""
    durable: bool
    """True when an appended record survives the process (SQLite, Redis)."""

    def append(self, entries: Sequence[tuple[bytes, bytes]], *, now: float) -> None:
        """Store ``(envelope, visitor)`` pairs; durable backends commit before returning.

        Raises:
            SpoolError: the store could not take them (disk full, Redis down...).
        """
        ...

    def claim(
        self, *, max_records: int, max_bytes: int, lease: float, now: float
    ) -> list[SpoolRecord]:
        """Lease up to ``max_records`` due records of ONE envelope, oldest first.

        A record is due when it is not leased (or its lease expired) and its next
        attempt time has come. The visitor bytes of the returned records add up to at
        most ``max_bytes`` (a single larger record is returned alone). Returns an empty
        list when nothing is due.
        """
        ...

    def ack(self, ids: Sequence[int | str]) -> None:
        """The records were delivered: remove them."""
        ...

    def retry(
        self,
        ids: Sequence[int | str],
        *,
        attempts: int,
        first_attempt_at: float,
        next_attempt_at: float,
    ) -> None:
        """Release the lease and schedule the next attempt."""
        ...

    def dead_letter(
        self,
        ids: Sequence[int | str],
        *,
        reason: str,
        now: float,
        attempts: int | None = None,
    ) -> None:
        """Move the records to the dead letters with ``reason``.

        ``attempts`` is the number of delivery attempts made, the one that just failed
        included (what :attr:`DeadLetter.attempts` then says); ``None`` keeps the count
        stored with the records (visitors refused before any send: too large, an
        unreadable envelope).
        """
        ...

    def next_due_at(self, *, now: float) -> float | None:
        """Earliest time a record becomes claimable (``now`` if one is due), or None."""
        ...

    def stats(self, *, now: float) -> SpoolStats:
        """Depth, bytes, oldest record, dead letters and evictions."""
        ...

    def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters, for inspection."""
        ...

    def replay_dead_letters(self, *, reason: str | None = None, now: float) -> int:
        """Put dead letters (of ``reason``, or all) back in the queue; returns how many."""
        ...

    def purge_dead_letters(self, *, reason: str | None = None) -> int:
        """Delete dead letters (of ``reason``, or all); returns how many."""
        ...

    def close(self) -> None:
        """Release connections and files. Idempotent."""
        ...


@runtime_checkable
class BufferedSpool(Spool, Protocol):
    """A spool that holds visitors in memory before they reach its store (SpoolFront)."""

    @property
    def buffered(self) -> int:
        """Visitors in memory not yet committed to the store."""
        ...

    @property
    def fallback_active(self) -> bool:
        """True while the store fails and visitors are held in memory only."""
        ...

    def flush_buffer(self, timeout: float = 5.0) -> bool:
        """Commit what is buffered; True when the buffer is empty within ``timeout``."""
        ...


@runtime_checkable
class ClaimQueue(Protocol):
    """The sender's view of a spool: what is waiting, and a batch of it to send.

    :class:`~xpevents.spool.memory.MemorySpool` implements it natively (no per-record
    objects); :class:`~xpevents.spool.queue.SpoolQueue` adapts any other spool.
    """

    def waiting(self, *, now: float) -> tuple[int, float | None, float | None]:
        """``(visitors due now, enqueued_at of the oldest of them, next retry time)``."""
        ...

    def claim_batch(
        self, *, max_records: int, max_bytes: int, lease: float, now: float
    ) -> Claim | None:
        """Lease the oldest due visitors of one envelope, or ``None`` when none is due."""
        ...

    def pending_since(self, when: float) -> int:
        """Visitors held that were enqueued at or before ``when``."""
        ...


def spool_problem(store: object) -> str | None:
    """Why ``store`` refuses writes for good (its ``problem``, if it has one), or ``None``.

    A backend that can find out that what it writes would be lost (an SQLite file
    deleted under the process, a Redis stream that lost its group) says so in a
    ``problem`` attribute; the other spools have none.
    """
    problem = getattr(store, "problem", None)
    return problem if isinstance(problem, str) else None
