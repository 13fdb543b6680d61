"""The front of a durable spool: write-through or group commit, and what to do when the
store fails.

:class:`SpoolFront` wraps a durable store (SQLite, Redis) and is itself a
:class:`~xpevents.spool.base.Spool`, so a dispatcher only ever talks to one spool.

Durability modes:

``"always"`` (the default)
    ``append`` writes through: the visitors are committed to the store before
    ``append`` (and so ``dispatch_event``) returns. A visitor whose ``dispatch_event``
    returned survives a crash of the process.
``"interval"``
    ``append`` puts the visitors in a memory buffer and returns at once; a background
    thread commits the buffer to the store every ``commit_interval`` seconds (group
    commit: one transaction for everything that arrived in the interval). A SIGKILL
    loses what was buffered and not yet committed: at most ``commit_interval`` plus
    one commit's worth of visitors (measured in ``docs/operations.md``).

When the store fails (disk full, Redis down: :class:`~xpevents.errors.SpoolError`):

``on_spool_error="memory"`` (the default)
    the visitors are held in the bounded memory buffer (``max_buffer_events``; beyond
    it the oldest are dropped and reported as ``spool_buffer_full``), one warning is
    logged per episode, and the background thread writes them to the store when it
    recovers. Durability is suspended meanwhile: :attr:`SpoolFront.fallback_active`
    is ``True`` (``DispatchStats.durability_suspended``).
``on_spool_error="drop"``
    the visitors are dropped and reported as ``spool_error``.

``append`` never raises. Drops are reported through ``on_drop(reason, count)``.
Other operations that fail on a broken store are logged and made harmless, so that
visitors are sent again rather than lost (see :mod:`xpevents.spool.safe`, the front's
base).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal

from xpevents._internal import forking
from xpevents._internal.closing import Closing
from xpevents._internal.validate import optional_callable, positive_int, positive_seconds
from xpevents.errors import ConfigError
from xpevents.spool.base import Spool, SpoolStats
from xpevents.spool.safe import SafeStore

logger = logging.getLogger("xpevents.spool.front")

_COMMIT_CHUNK = 10_000


class SpoolFront(SafeStore, Closing):
    """A durable store behind write-through or group commit, with a memory fallback.

    Args:
        store: the durable :class:`~xpevents.spool.base.Spool` (SQLite, Redis).
        durability: ``"always"`` (write through before ``append`` returns) or
            ``"interval"`` (group commit from a background thread).
        commit_interval: seconds between group commits in ``"interval"`` mode.
            Default 0.005.
        on_spool_error: ``"memory"`` (hold visitors in memory while the store fails,
            write them when it recovers) or ``"drop"`` (drop and count them).
        max_buffer_events: visitors the memory buffer holds at most; the oldest are
            dropped beyond it (``spool_buffer_full``). Default 10,000.
        on_drop: ``on_drop(reason, count)`` for every visitor dropped here.
        max_uncommitted: ``"interval"`` only: when this many visitors wait in the
            buffer (the committer thread fell behind, typically starved of the GIL by a
            producer in a tight loop), ``append`` commits them itself (backpressure)
            instead of letting the buffer, and so the loss window on a crash, grow.
            Default 2,000.
        retry_interval: first wait before writing to a failed store again, doubled up
            to ``max_retry_interval``. Defaults 0.05 s and 1 s.

    Raises:
        ConfigError: an argument is invalid.
    """

    def __init__(
        self,
        store: Spool,
        *,
        durability: Literal["always", "interval"] | str = "always",
        commit_interval: float = 0.005,
        on_spool_error: Literal["memory", "drop"] | str = "memory",
        max_buffer_events: int = 10_000,
        on_drop: Callable[[str, int], None] | None = None,
        max_uncommitted: int = 2_000,
        retry_interval: float = 0.05,
        max_retry_interval: float = 1.0,
    ) -> None:
        owner = type(self).__name__
        if not isinstance(store, Spool):
            raise ConfigError(f"{owner}(store={store!r}): expected a Spool")
        if durability not in ("always", "interval"):
            raise ConfigError(
                f"{owner}(durability={durability!r}): expected 'always' or 'interval'"
            )
        if on_spool_error not in ("memory", "drop"):
            raise ConfigError(
                f"{owner}(on_spool_error={on_spool_error!r}): expected 'memory' or 'drop'"
            )
        self.durability = durability
        self.on_spool_error = on_spool_error
        self.commit_interval = positive_seconds("commit_interval", commit_interval, owner=owner)
        self.max_buffer_events = positive_int("max_buffer_events", max_buffer_events, owner=owner)
        on_drop = optional_callable("on_drop", on_drop, owner=owner)
        self.max_uncommitted = positive_int("max_uncommitted", max_uncommitted, owner=owner)
        self._retry_interval = positive_seconds("retry_interval", retry_interval, owner=owner)
        self._max_retry_interval = positive_seconds(
            "max_retry_interval", max_retry_interval, owner=owner
        )
        super().__init__(store, hold=on_spool_error == "memory", on_drop=on_drop)
        self._always = durability == "always"
        self._closed = False
        self._committed = 0
        self._init_runtime()
        forking.track(self, forking.Stage.FRONT)

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._settled = threading.Condition(self._lock)
        self._hurry = threading.Event()
        self._buffer: deque[tuple[bytes, bytes]] = deque()
        self._in_flight = 0
        self._init_failure_state()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def _reset_after_fork(self) -> None:
        # The parent's thread does not exist here and its buffer belongs to the parent
        # (which commits it): start afresh and empty.
        self._init_runtime()

    @property
    def buffered(self) -> int:
        """Visitors in memory not yet committed to the store."""
        return len(self._buffer) + self._in_flight

    def append(self, entries: Sequence[tuple[bytes, bytes]], *, now: float) -> None:
        """Write through (``"always"``) or buffer (``"interval"``); never raises."""
        if not entries:
            return
        if self._closed:
            self._drop("closed", len(entries))
            return
        if self._always and not self._fallback:
            try:
                self.store.append(entries, now=now)
                return
            except Exception as error:  # SpoolError, or a store bug: never raise here
                self._store_failed(error)
            if not self._hold:
                self._drop("spool_error", len(entries))
                return
        elif self._always and not self._hold:
            # "drop" mode in an episode: try the store, it may be back.
            try:
                self.store.append(entries, now=now)
            except Exception:
                self._drop("spool_error", len(entries))
                return
            self._store_recovered()
            return
        self._buffer_entries(entries)

    def _buffer_entries(self, entries: Sequence[tuple[bytes, bytes]]) -> None:
        if self._thread is None:  # the at-fork hook resets it in a child
            self._start()
        with self._lock:
            buffer = self._buffer
            was_empty = not buffer
            buffer.extend(entries)
            if self._mark is not None:
                self._mark.accepted(len(entries))
            if self._fallback:
                self._held += len(entries)
            # Checked here, not in _trim_locked: this runs for every event.
            overflow = self._trim_locked() if len(buffer) > self.max_buffer_events else 0
            if was_empty:
                self._wake.notify()
            behind = (
                not self._fallback
                and not self._always
                and len(buffer) >= self.max_uncommitted
                and not self._stopping
            )
            batch = self._take_batch_locked() if behind else []
        if overflow:
            self._drop_buffered("spool_buffer_full", overflow)
        if batch:
            self._commit_inline(batch)

    def _commit_inline(self, batch: list[tuple[bytes, bytes]]) -> None:
        """Backpressure: the caller commits what the committer thread has not."""
        try:
            self._store_append(batch)
        except Exception as error:
            with self._lock:
                self._in_flight -= len(batch)
            self._commit_failed(batch, error, in_flight_cleared=True)
            return
        with self._lock:
            self._committed_locked(len(batch))

    def _trim_locked(self) -> int:
        """Drop the oldest visitors beyond ``max_buffer_events``; returns how many."""
        excess = max(0, len(self._buffer) - self.max_buffer_events)
        for _ in range(excess):
            self._buffer.popleft()
        return excess

    def _take_batch_locked(self) -> list[tuple[bytes, bytes]]:
        """The oldest buffered visitors, one commit's worth, now in flight."""
        count = min(len(self._buffer), _COMMIT_CHUNK)
        self._in_flight += count
        return [self._buffer.popleft() for _ in range(count)]

    def _committed_locked(self, count: int) -> bool:
        """``count`` visitors in flight were committed; True when nothing is left."""
        self._in_flight -= count
        self._committed += count
        if self._buffer or self._in_flight:
            return False
        self._settled.notify_all()
        return True

    def _pending_locked(self) -> bool:
        return bool(self._buffer or self._in_flight)

    def _start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = None
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._run, name="xpevents-spool-commit", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        backoff = self._retry_interval
        while True:
            with self._lock:
                while not self._buffer and not self._stopping:
                    self._wake.wait()
                if self._closed or (not self._buffer and self._stopping):
                    return
            if not self._always and not self._fallback and not self._stopping:
                # Group commit: let the interval's visitors gather (cut short by flush).
                self._hurry.wait(self.commit_interval)
            with self._lock:
                batch = self._take_batch_locked()
            if not batch:
                continue
            try:
                self._store_append(batch)
            except Exception as error:
                self._commit_failed(batch, error)
                # Wait before the next try; flush_buffer() and close() cut it short.
                self._hurry.wait(backoff)
                self._hurry.clear()
                backoff = min(backoff * 2, self._max_retry_interval)
                continue
            backoff = self._retry_interval
            with self._lock:
                if self._committed_locked(len(batch)):
                    self._hurry.clear()
            if self._fallback:
                self._store_recovered()

    def _commit_failed(
        self,
        batch: list[tuple[bytes, bytes]],
        error: BaseException,
        *,
        in_flight_cleared: bool = False,
    ) -> None:
        was_failing = self._fallback
        self._store_failed(error)
        release = 0 if in_flight_cleared else len(batch)
        if not self._hold:
            with self._lock:
                self._in_flight -= release
                self._settled.notify_all()
            self._drop_buffered("spool_error", len(batch))
            return
        with self._lock:
            self._in_flight -= release
            if self._closed:  # close() gave up on these; it counted them as lost
                self._settled.notify_all()
                return
            if not was_failing and not self._always:
                self._held += len(self._buffer) + len(batch)
            self._buffer.extendleft(reversed(batch))
            overflow = self._trim_locked()
        if overflow:
            self._drop_buffered("spool_buffer_full", overflow)

    def flush_buffer(self, timeout: float = 5.0) -> bool:
        """Commit what is buffered now; True when the buffer is empty within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._buffer and not self._in_flight:
                return True
        if self._thread is None or self._pid != os.getpid():
            self._start()
        self._hurry.set()
        with self._lock:
            self._wake.notify()
            while self._buffer or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._settled.wait(min(left, 0.05))
        return True

    def next_due_at(self, *, now: float) -> float | None:
        """The store's, or ``now + commit_interval`` while visitors wait in the buffer."""
        due = self._store_due_at(now, failed=now + self._max_retry_interval)
        if self._buffer or self._in_flight:
            soon = now + (self._max_retry_interval if self._fallback else self.commit_interval)
            due = soon if due is None else min(due, soon)
        return due

    def stats(self, *, now: float) -> SpoolStats:
        """The store's stats plus the buffered visitors (in ``depth`` and ``bytes``)."""
        with self._lock:
            buffered = list(self._buffer)
            in_flight = self._in_flight
        extra_depth = len(buffered) + in_flight
        extra_bytes = sum(len(visitor) for _, visitor in buffered)
        base = self._store_stats(now)
        if not extra_depth:
            return base
        return SpoolStats(
            depth=base.depth + extra_depth,
            bytes=base.bytes + extra_bytes,
            leased=base.leased,
            oldest_enqueued_at=base.oldest_enqueued_at,
            dead_letters=base.dead_letters,
            evicted=base.evicted,
            lost=base.lost,
        )

    def close(self, timeout: float = 5.0) -> None:
        """Commit the buffer (up to ``timeout`` seconds), stop the thread, close the store.

        Visitors still buffered at the deadline (the store kept failing) are lost,
        logged and reported as ``closed``. Idempotent.
        """
        if self._closed:
            return
        flushed = self.flush_buffer(timeout)
        with self._lock:
            self._closed = True
            self._stopping = True
            lost = len(self._buffer) + self._in_flight
            self._buffer.clear()
            self._wake.notify_all()
            thread = self._thread
        self._hurry.set()
        if thread is not None and self._pid == os.getpid():
            thread.join(timeout=max(1.0, self.commit_interval * 4))
        if not flushed and lost:
            logger.error(
                "spool %s closed with %d visitor(s) not committed (the store kept failing); "
                "they are lost",
                self.url,
                lost,
            )
            self._drop_buffered("closed", lost)
        if self._mark is not None:
            self._mark.close(settled=True)
        try:
            self.store.close()
        except Exception:
            logger.exception("closing spool %s failed", self.url)
        forking.untrack(self)

    def __repr__(self) -> str:
        return (
            f"SpoolFront({self.store!r}, durability={self.durability!r}, "
            f"on_spool_error={self.on_spool_error!r})"
        )
