"""Admission and durable writes: the relay's side of the spool.

The relay answers 204 only once the visitors are in the spool, so it writes to the
store itself, from a worker thread, and must see every failure: it never goes through
``SpoolFront`` (whose memory fallback would turn a failed write into a silent,
non-durable success).

A full spool is refused, not evicted: the store's own eviction bound drops the
*oldest* records, which were already acknowledged to a client. So the writer admits a
request only while the spool's depth stays under ``max_events`` / ``max_bytes``, and
the store is opened with eviction bounds above those (see
:func:`store_bounds`). The depth is read from the store at most every
``refresh`` seconds and, in between, estimated from above: the last reading plus
everything appended or being appended since (acks are ignored until the next
reading), so concurrent requests can never push the spool past the limit in one
process. Several processes sharing a spool can overshoot by what they admit within
``refresh`` seconds, which the eviction headroom absorbs.

Ingest workers sharing one SQLite spool (``--workers N``) take turns at committing
with a lock file (:meth:`SpoolWriter.share_commits`, ``flock``) before SQLite's own
lock, whose busy handler sleeps 1, 2, 5, 10... ms (30 ms on the p99 of two workers).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

from xpevents._internal.ratelimit import LogEvery
from xpevents.errors import SpoolError, SpoolFull
from xpevents.relay.lockfile import lock, try_lock
from xpevents.spool.base import Spool
from xpevents.spool.memory import MemorySpool

__all__ = ["SpoolFull", "SpoolWriter", "store_bounds"]

logger = logging.getLogger("xpevents.relay")

_LOG_EVERY: Final = 10.0


class _Batch:
    """Entries of concurrent requests committed together (see ``_group_append``)."""

    __slots__ = ("done", "entries", "error")

    def __init__(self) -> None:
        self.entries: list[tuple[bytes, bytes]] = []
        self.done = False
        self.error: BaseException | None = None


def store_bounds(max_events: int, max_bytes: int) -> tuple[int, int]:
    """The store's eviction bounds for relay limits ``max_events`` and ``max_bytes``.

    Twice the admission limit, and at least 100,000 visitors / 64 MiB above it, so
    the store never evicts what the relay accepted.
    """
    return max(2 * max_events, max_events + 100_000), max(2 * max_bytes, max_bytes + (64 << 20))


class SpoolWriter:
    """Admit and write visitors to ``store``; thread-safe.

    Args:
        store: the raw store (``SqliteSpool``, ``RedisSpool``, ``MemorySpool``...).
        max_events: visitors the spool may hold before requests are refused.
        max_bytes: visitor bytes the spool may hold before requests are refused.
        refresh: seconds between readings of the store's real depth.
        on_written: called with the number of visitors after each successful write.
    """

    def __init__(
        self,
        store: Spool,
        *,
        max_events: int,
        max_bytes: int,
        refresh: float = 0.25,
        on_written: Callable[[int], object] | None = None,
    ) -> None:
        self.store = store
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._refresh = refresh
        self._on_written = on_written
        self._memory = store if isinstance(store, MemorySpool) else None
        self._lock = threading.Lock()
        self._batch_lock = threading.Lock()  # guards _open
        self._commit_lock = threading.Lock()  # one store.append at a time
        self._open: _Batch | None = None  # entries waiting for the next commit
        self._read_at = float("-inf")  # monotonic time of the last depth reading
        self._depth = 0  # last reading
        self._bytes = 0
        self._since = 0  # visitors written since the reading
        self._since_bytes = 0
        self._pending = 0  # visitors being written right now
        self._pending_bytes = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None  # wall clock
        self.last_write_at: float | None = None
        self._error_log = LogEvery(_LOG_EVERY)
        self._shared: int | None = None  # the lock file's descriptor (share_commits)
        self._shared_wait = 5.0

    def share_commits(self, lock_file: Path, *, wait: float = 5.0) -> None:
        """Hold ``lock_file`` (``flock``) through each commit: processes take turns.

        A commit waits for the lock file at most ``wait`` seconds (the spool's busy
        timeout), then goes on to SQLite's own lock, whose busy timeout turns a stuck
        holder (a stopped process) into a :class:`SpoolError` as without the lock file.
        """
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if self._shared is not None:
            os.close(self._shared)
        self._shared = fd
        self._shared_wait = wait

    @contextlib.contextmanager
    def _committing(self) -> Iterator[None]:
        """This process's turn at the store: the commit lock, and the lock file if shared."""
        with self._commit_lock:
            fd = self._shared
            if fd is None:
                yield
                return
            locked = lock(fd, self._shared_wait)
            try:
                yield
            finally:
                if locked:
                    fcntl.flock(fd, fcntl.LOCK_UN)

    # -- the write path ---------------------------------------------------------------

    def write(self, envelope: bytes, visitors: Sequence[bytes], *, now: float) -> None:
        """Store ``visitors`` under ``envelope``, committed before returning.

        Raises:
            SpoolFull: admitting them would pass ``max_events`` or ``max_bytes``.
            SpoolError: the store failed; nothing is known to be written.
        """
        n = len(visitors)
        if not n:
            return
        size = sum(len(v) for v in visitors)
        if self._memory is not None:
            if not self._memory.offer(envelope, visitors, now):
                raise SpoolFull(f"the memory spool holds {self._memory.depth} visitors")
            self._written(n, size, reserved=False)
            return
        self._admit(n, size)
        try:
            self._group_append([(envelope, visitor) for visitor in visitors], now)
        except BaseException as exc:
            self._release(n, size)
            if isinstance(exc, SpoolError):
                self._failed(exc)
            raise
        self._written(n, size, reserved=True)

    def write_many(
        self, requests: Sequence[tuple[bytes, Sequence[bytes]]], *, now: float
    ) -> list[BaseException | None]:
        """Admit each request and commit all admitted ones in one transaction.

        The outcome of each request, in order: ``None`` (committed), :class:`SpoolFull`
        (refused: admitting it would pass a limit) or the store's error (nothing of the
        batch is known to be written). One caller at a time (the relay's committer
        thread); it returns once the transaction is committed.
        """
        if self._memory is not None:
            return [self._try_write(envelope, visitors, now) for envelope, visitors in requests]
        results, entries, n, size = self._admit_many(requests)
        if not entries:
            return results
        try:
            with self._committing():
                self.store.append(entries, now=now)
        except BaseException as exc:
            return self._not_written(exc, results, n, size)
        self._written(n, size, reserved=True)
        return results

    async def write_many_async(
        self, requests: Sequence[tuple[bytes, Sequence[bytes]]], *, now: float
    ) -> list[BaseException | None]:
        """:meth:`write_many` through the store's asyncio appender (see
        :attr:`appends_async`): the round trip is awaited on the event loop. One call at
        a time (the committer's)."""
        results, entries, n, size = self._admit_many(requests)
        if not entries:
            return results
        try:
            await self.store.appender.append(entries, now=now)  # type: ignore[attr-defined]
        except BaseException as exc:
            return self._not_written(exc, results, n, size)
        self._written(n, size, reserved=True)
        return results

    @property
    def appends_async(self) -> bool:
        """Whether the store appends from an event loop (a Redis spool opened from a URL)."""
        return getattr(self.store, "appender", None) is not None

    @property
    def can_try_write(self) -> bool:
        """Whether :meth:`try_write_many` can commit without waiting (SQLite can)."""
        return hasattr(self.store, "try_append")

    def try_write_many(
        self, requests: Sequence[tuple[bytes, Sequence[bytes]]], *, now: float
    ) -> list[BaseException | None] | None:
        """:meth:`write_many` if it need not wait: ``None`` (nothing written or counted)
        while another commit holds the store or the lock file (see :attr:`can_try_write`)."""
        try_append = getattr(self.store, "try_append", None)
        if try_append is None:
            return None
        if not self._commit_lock.acquire(blocking=False):
            return None
        shared = self._shared
        if shared is not None and not try_lock(shared):
            self._commit_lock.release()
            return None
        try:
            results, entries, n, size = self._admit_many(requests)
            if not entries:
                return results
            try:
                written = try_append(entries, now=now)
            except BaseException as exc:
                return self._not_written(exc, results, n, size)
        finally:
            if shared is not None:
                fcntl.flock(shared, fcntl.LOCK_UN)
            self._commit_lock.release()
        if not written:
            self._release(n, size)
            return None
        self._written(n, size, reserved=True)
        return results

    def _admit_many(
        self, requests: Sequence[tuple[bytes, Sequence[bytes]]]
    ) -> tuple[list[BaseException | None], list[tuple[bytes, bytes]], int, int]:
        """Each request's admission (``None`` or its refusal), the admitted entries, and
        their visitor count and bytes (reserved until written or released)."""
        results: list[BaseException | None] = []
        entries: list[tuple[bytes, bytes]] = []
        total_n = total_size = 0
        for envelope, visitors in requests:
            n, size = len(visitors), sum(len(v) for v in visitors)
            try:
                if n:
                    self._admit(n, size)
            except (SpoolFull, SpoolError) as exc:
                results.append(exc)
                continue
            results.append(None)
            total_n += n
            total_size += size
            entries.extend((envelope, visitor) for visitor in visitors)
        return results, entries, total_n, total_size

    def _not_written(
        self, exc: BaseException, results: list[BaseException | None], n: int, size: int
    ) -> list[BaseException | None]:
        """Release the reservation of a failed commit; each admitted request's outcome."""
        self._release(n, size)
        if isinstance(exc, SpoolError):
            self._failed(exc)
        if not isinstance(exc, Exception):
            raise exc
        return [exc if result is None else result for result in results]

    def _try_write(
        self, envelope: bytes, visitors: Sequence[bytes], now: float
    ) -> BaseException | None:
        try:
            self.write(envelope, visitors, now=now)
        except (SpoolFull, SpoolError) as exc:
            return exc
        return None

    def _group_append(self, entries: list[tuple[bytes, bytes]], now: float) -> None:
        """Append ``entries`` in one transaction shared with concurrent requests.

        Group commit: requests that arrive while a write is in progress join the next
        batch; the first of them to get the commit lock writes the whole batch at once
        and the others wait for its outcome. Every request still returns only after
        its own entries are committed (or raises the batch's error).
        """
        with self._batch_lock:
            batch = self._open
            if batch is None:
                batch = self._open = _Batch()
            batch.entries.extend(entries)
        with self._committing():
            if not batch.done:
                with self._batch_lock:
                    if self._open is batch:
                        self._open = None
                try:
                    self.store.append(batch.entries, now=now)
                except BaseException as exc:
                    batch.error = exc
                finally:
                    batch.done = True
        if batch.error is not None:
            raise batch.error

    def _release(self, n: int, size: int) -> None:
        with self._lock:
            self._pending -= n
            self._pending_bytes -= size

    def _admit(self, n: int, size: int) -> None:
        with self._lock:
            clock = time.monotonic()
            if clock - self._read_at >= self._refresh or (
                self._over(n, size) and clock - self._read_at >= 0.02
            ):
                self._read(clock)
            if self._over(n, size):
                raise SpoolFull(
                    f"the spool holds about {self._depth + self._since + self._pending} "
                    f"visitors / {self._bytes + self._since_bytes + self._pending_bytes} "
                    f"bytes (limits {self.max_events} / {self.max_bytes})"
                )
            self._pending += n
            self._pending_bytes += size

    def _over(self, n: int, size: int) -> bool:
        return (
            self._depth + self._since + self._pending + n > self.max_events
            or self._bytes + self._since_bytes + self._pending_bytes + size > self.max_bytes
        )

    def _read(self, clock: float) -> None:
        """Read the store's depth (under the lock); a failure keeps the old reading."""
        try:
            stats = self.store.stats(now=time.time())
        except SpoolError as exc:
            self._failed(exc)
            raise
        self._depth, self._bytes = stats.depth, stats.bytes
        self._since = self._since_bytes = 0
        self._read_at = clock

    def _written(self, n: int, size: int, *, reserved: bool) -> None:
        with self._lock:
            if reserved:
                self._pending -= n
                self._pending_bytes -= size
                self._since += n
                self._since_bytes += size
            self.last_write_at = time.time()
            if self.last_error is not None:
                logger.info("spool %s accepts writes again", self.store.url)
                self.last_error = None
        if self._on_written is not None:
            self._on_written(n)

    def _failed(self, exc: SpoolError) -> None:
        now = time.time()
        self.last_error = str(exc)
        self.last_error_at = now
        if self._error_log.due():
            logger.error(
                "spool %s: write failed: %s; requests are answered 503 with Retry-After "
                "until it recovers (logged at most every %d s)",
                self.store.url,
                exc,
                int(_LOG_EVERY),
            )

    # -- readiness --------------------------------------------------------------------

    def failing(self, *, within: float = 10.0) -> bool:
        """True when the last write failed less than ``within`` seconds ago."""
        at = self.last_error_at
        return self.last_error is not None and at is not None and time.time() - at < within

    def full(self) -> bool:
        """True when the next one-visitor request would be refused as ``spool_full``."""
        if self._memory is not None:
            return self._memory.depth >= self._memory.max_events
        with self._lock:
            self._read(time.monotonic())
            return self._over(1, 0)
