"""A durable store with its failures contained: what a
:class:`~xpevents.spool.front.SpoolFront` does when its store fails.

* An *episode* starts at the first failure: one error is logged (what happens to the
  visitors meanwhile, per ``on_spool_error``) and :attr:`SafeStore.fallback_active`
  turns true until the front has written everything it held. Visitors dropped are
  counted by reason and reported through ``on_drop(reason, count)``.
* The operations the senders call pass through to the store, and a failure is logged
  (at most once every 10 s) and made harmless: a failed ``claim`` returns nothing; a
  failed ``ack``/``retry``/``dead_letter`` leaves the lease to expire, so the visitors
  are sent again (at least once, never lost); ``next_due_at`` and ``stats`` answer as
  for an empty store.
* The dead-letter tools (``dead_letters``, ``replay_dead_letters``,
  ``purge_dead_letters``) raise :class:`~xpevents.errors.SpoolError`: an operator runs
  them and must see the failure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from xpevents._internal.ratelimit import LogEvery
from xpevents.errors import SpoolError
from xpevents.spool.base import DeadLetter, Spool, SpoolRecord, SpoolStats, spool_problem
from xpevents.spool.sqlite.watermark import Watermark

__all__ = ["SafeStore"]

logger = logging.getLogger("xpevents.spool.front")

_LOG_EVERY = 10.0


class SafeStore:
    """The base of :class:`~xpevents.spool.front.SpoolFront`: the store, its failure
    episodes and drops, and the operations the senders call, made safe.

    Args:
        store: the durable store.
        hold: ``on_spool_error="memory"``: visitors are held while the store fails
            (otherwise they are dropped); only the log line says which.
        on_drop: ``on_drop(reason, count)`` for every visitor dropped.
    """

    # Set by the front, which owns the lock and the buffer the fallback holds visitors in.
    _lock: threading.Lock
    max_buffer_events: int

    def __init__(
        self, store: Spool, *, hold: bool, on_drop: Callable[[str, int], None] | None
    ) -> None:
        self.store = store
        self.url = store.url
        self.durable = store.durable
        self._hold = hold
        self._on_drop = on_drop
        self._dropped: Counter[str] = Counter()
        self._episodes = 0
        self._held = 0
        # Loss accounting, only for a store whose own class keeps marks (not a wrapper
        # passing attributes on): see xpevents.spool.sqlite.watermark.
        make_mark = getattr(type(store), "loss_watermark", None)
        self._mark: Watermark | None = make_mark(store) if callable(make_mark) else None

    def _init_failure_state(self) -> None:
        """No episode under way (at start, and in a forked child)."""
        self._fallback = False
        self._episode_started = 0.0
        self._op_log = LogEvery(_LOG_EVERY)

    @property
    def fallback_active(self) -> bool:
        """True while the store is failing and durability is suspended."""
        return self._fallback

    @property
    def problem(self) -> str | None:
        """The store's own ``problem`` (see :func:`~xpevents.spool.base.spool_problem`)."""
        return spool_problem(self.store)

    @property
    def dropped(self) -> Mapping[str, int]:
        """Visitors dropped here, by reason (``spool_error``, ``spool_buffer_full``, ``closed``)."""
        with self._lock:
            return MappingProxyType(dict(self._dropped))

    @property
    def episodes(self) -> int:
        """How many times the store started failing."""
        return self._episodes

    @property
    def held(self) -> int:
        """Visitors held in memory because the store was failing (all episodes)."""
        return self._held

    def _drop(self, reason: str, count: int) -> None:
        with self._lock:
            self._dropped[reason] += count
        if self._on_drop is not None:
            try:
                self._on_drop(reason, count)
            except Exception:
                logger.exception("on_drop callback failed")

    def _drop_buffered(self, reason: str, count: int) -> None:
        """Accepted visitors dropped from the buffer (the loss accounting knows)."""
        if self._mark is not None:
            with self._lock:
                self._mark.dropped(count)
        self._drop(reason, count)

    def _store_append(self, batch: list[tuple[bytes, bytes]]) -> None:
        """Commit ``batch`` to the store, with the front's committed total if it keeps one."""
        mark = self._mark.mark(len(batch)) if self._mark is not None else None
        if mark is None:
            self.store.append(batch, now=time.time())
            return
        self.store.append(batch, now=time.time(), mark=mark)  # type: ignore[call-arg]
        assert self._mark is not None
        self._mark.committed = mark[1]

    def _store_failed(self, error: BaseException) -> None:
        with self._lock:
            if self._fallback:
                return
            self._fallback = True
            self._episodes += 1
            self._episode_started = time.monotonic()
        if self._hold:
            logger.error(
                "spool %s is failing: %s. DURABILITY SUSPENDED: visitors are held in memory "
                "(at most %d, oldest dropped beyond) and written to the store when it "
                "recovers; a crash now loses them",
                self.url,
                error,
                self.max_buffer_events,
            )
        else:
            logger.error(
                "spool %s is failing: %s. Visitors are DROPPED (on_spool_error='drop') "
                "until it recovers; counted as 'spool_error'",
                self.url,
                error,
            )

    def _pending_locked(self) -> bool:
        """Whether visitors wait to be written to the store (with the lock held)."""
        raise NotImplementedError  # the front's buffer

    def _store_recovered(self) -> None:
        """End the episode, once the store took everything held meanwhile."""
        with self._lock:
            if not self._fallback or self._pending_locked():
                return
            self._fallback = False
            lasted = time.monotonic() - self._episode_started
        logger.warning(
            "spool %s recovered after %.1f s; durability restored (held so far: %d, "
            "dropped so far: %s)",
            self.url,
            lasted,
            self._held,
            dict(self._dropped) or "none",
        )

    def _op_failed(self, action: str, error: BaseException) -> None:
        if self._op_log.due():
            logger.warning(
                "spool %s: %s failed: %s (records stay leased until the lease expires, "
                "then are sent again)",
                self.url,
                action,
                error,
            )

    def claim(
        self, *, max_records: int, max_bytes: int, lease: float, now: float
    ) -> list[SpoolRecord]:
        """The store's ``claim``; an empty list while the store fails."""
        try:
            return self.store.claim(
                max_records=max_records, max_bytes=max_bytes, lease=lease, now=now
            )
        except SpoolError as error:
            self._op_failed("claim", error)
            return []

    def ack(self, ids: Sequence[int | str]) -> None:
        """The store's ``ack``; a failure is logged (the records will be sent again)."""
        try:
            self.store.ack(ids)
        except SpoolError as error:
            self._op_failed("ack", error)

    def retry(
        self,
        ids: Sequence[int | str],
        *,
        attempts: int,
        first_attempt_at: float,
        next_attempt_at: float,
    ) -> None:
        """The store's ``retry``; a failure is logged (the lease expires instead)."""
        try:
            self.store.retry(
                ids,
                attempts=attempts,
                first_attempt_at=first_attempt_at,
                next_attempt_at=next_attempt_at,
            )
        except SpoolError as error:
            self._op_failed("retry", error)

    def dead_letter(
        self,
        ids: Sequence[int | str],
        *,
        reason: str,
        now: float,
        attempts: int | None = None,
    ) -> None:
        """The store's ``dead_letter``; a failure is logged (the lease expires instead)."""
        try:
            self.store.dead_letter(ids, reason=reason, now=now, attempts=attempts)
        except SpoolError as error:
            self._op_failed("dead_letter", error)

    def _store_due_at(self, now: float, *, failed: float) -> float | None:
        """The store's ``next_due_at``; ``failed`` when it fails (logged)."""
        try:
            return self.store.next_due_at(now=now)
        except SpoolError as error:
            self._op_failed("next_due_at", error)
            return failed

    def _store_stats(self, now: float) -> SpoolStats:
        """The store's ``stats``; empty stats when it fails (logged)."""
        try:
            return self.store.stats(now=now)
        except SpoolError as error:
            self._op_failed("stats", error)
            return SpoolStats()

    def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """The store's dead letters (raises :class:`SpoolError` if it fails)."""
        return self.store.dead_letters(limit=limit)

    def replay_dead_letters(self, *, reason: str | None = None, now: float) -> int:
        """The store's replay (raises :class:`SpoolError` if it fails)."""
        return self.store.replay_dead_letters(reason=reason, now=now)

    def purge_dead_letters(self, *, reason: str | None = None) -> int:
        """The store's purge (raises :class:`SpoolError` if it fails)."""
        return self.store.purge_dead_letters(reason=reason)
