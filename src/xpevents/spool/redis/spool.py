"""A durable spool in a Redis stream, shared by many machines.

The URL and its options are described in :mod:`.url`; the keys and their entries in
:mod:`.schema`; how records move between them (every step one Lua script, so atomic)
in :mod:`.scripts`.

Lease times are measured by the Redis server's clock; enqueue and retry times by the
clients' clocks (keep them in sync with NTP).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, cast

import redis
from redis.asyncio import Redis as AsyncRedis
from redis.commands.core import Script

from xpevents._internal.cache import BoundedCache
from xpevents._internal.closing import Closing
from xpevents._internal.redact import shown_url
from xpevents.errors import ConfigError, SpoolError
from xpevents.spool import bounds
from xpevents.spool.base import DeadLetter, SpoolRecord, SpoolStats
from xpevents.spool.connection import ProcessConnection
from xpevents.spool.redis import schema
from xpevents.spool.redis.aio import AsyncAppender
from xpevents.spool.redis.losses import ResetWatch
from xpevents.spool.redis.schema import DEFAULT_GROUP, DEFAULT_STREAM, Keys
from xpevents.spool.redis.scripts import Scripts
from xpevents.spool.redis.url import async_factory
from xpevents.spool.redis.url import from_url as url_options

__all__ = ["RedisSpool"]

logger = logging.getLogger("xpevents.spool.redis")

_CHUNK = 1000


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _close_quietly(client: redis.Redis) -> None:
    with contextlib.suppress(redis.RedisError):
        client.close()


class RedisSpool(Closing):
    """A durable spool in a Redis stream with a consumer group, shared by many machines.

    Use :meth:`from_url`. See :mod:`xpevents.spool.redis` for the keys and how records
    move.

    Args:
        client: a ``redis.Redis`` with ``decode_responses=False``.
        stream: the stream name; default ``xpevents``.
        group: the consumer group; default ``xpevents``.
        consumer: this process's consumer name; default ``<hostname>-<pid>`` (renewed in
            a forked child).
        dead_stream: the dead-letter stream; default ``<stream>:dead``.
        max_spool_events, max_spool_bytes, max_event_age, max_dead_letters: bounds, as
            for :class:`~xpevents.spool.sqlite.SqliteSpool`.
        url: the URL shown in stats (``from_url`` fills it; the password is hidden).

    Raises:
        ConfigError: an argument is invalid.
        SpoolError: Redis cannot be reached, the key holds something else than a
            stream, or the spool was written by a newer xpevents.
    """

    durable = True

    def __init__(
        self,
        client: redis.Redis,
        *,
        stream: str = DEFAULT_STREAM,
        group: str = DEFAULT_GROUP,
        consumer: str | None = None,
        dead_stream: str | None = None,
        max_spool_events: int = bounds.DEFAULT_MAX_EVENTS,
        max_spool_bytes: int = bounds.DEFAULT_MAX_BYTES,
        max_event_age: float = bounds.DEFAULT_MAX_AGE,
        max_dead_letters: int = bounds.DEFAULT_MAX_DEAD_LETTERS,
        url: str | None = None,
        client_factory: Callable[[], redis.Redis] | None = None,
        async_client_factory: Callable[[], AsyncRedis] | None = None,
    ) -> None:
        bounds.check_bounds(
            "RedisSpool",
            max_spool_events=max_spool_events,
            max_spool_bytes=max_spool_bytes,
            max_event_age=max_event_age,
            max_dead_letters=max_dead_letters,
        )
        for name, value in (("stream", stream), ("group", group)):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"RedisSpool({name}={value!r}): expected a non-empty str")
        self.stream = stream
        self.group = group
        self._default_consumer = consumer is None
        self.consumer = consumer or _default_consumer()
        self.dead_stream = dead_stream or f"{stream}:dead"
        self.max_spool_events = max_spool_events
        self.max_spool_bytes = max_spool_bytes
        self.max_event_age = float(max_event_age)
        self.max_dead_letters = max_dead_letters
        self.url = url or f"redis://?stream={stream}"
        self._keys = Keys.of(stream, self.dead_stream)
        self._client_factory = client_factory
        self._connection = ProcessConnection(
            client, name=f"Redis spool {self.url}", reopen=self._reopen, close=_close_quietly
        )
        self._scripts = Scripts(client)
        factory = async_client_factory
        self.appender = AsyncAppender(self, factory) if factory is not None else None
        """Appends from an event loop (:mod:`.aio`); ``None`` unless opened from a URL."""
        self._digests: BoundedCache[bytes, bytes] = BoundedCache(4096)
        self._envelopes: dict[bytes, bytes] = {}
        self._last_age_check = 0.0
        self._lease_ms = 30_000
        schema.prepare(client, self._keys, group, self.url)
        self._watch = ResetWatch(self.url, self._keys)
        with self._guard("open"):
            self._watch.start(client)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisSpool:
        """Open ``redis://host:port/db?stream=NAME&group=G&consumer=C&dead=D``.

        Keyword options override the URL's (``stream``, ``group``, ``consumer``,
        ``dead_stream``) and set the bounds.

        Raises:
            ConfigError: the URL is invalid.
            SpoolError: Redis cannot be reached or the keys hold something else.
        """
        factory, shown, params = url_options(url)
        params.update(options)
        aio = async_factory(url)
        return cls(factory(), url=shown, client_factory=factory, async_client_factory=aio, **params)

    # -- plumbing -------------------------------------------------------------------

    def _reopen(self, inherited: redis.Redis) -> redis.Redis:
        # Forked: a new client (never the parent's sockets) and a consumer name of our
        # own, so the parent's and the child's leases stay apart.
        if self._default_consumer:
            self.consumer = _default_consumer()
        if self._client_factory is not None:
            client = self._client_factory()
        else:
            pool = inherited.connection_pool
            client = redis.Redis(connection_pool=pool.__class__(**pool.connection_kwargs))
        self._scripts = Scripts(client)
        return client

    def _client(self) -> redis.Redis:
        """This process's client (checked under the lock; used without it)."""
        with self._connection.lock:
            return self._connection.get()

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as error:
            raise SpoolError(
                f"Redis spool {self.url}: {action} failed: {error}; is Redis up and reachable?"
            ) from error

    def _run(self, script: Script, args: Sequence[Any], action: str) -> Any:
        client = self._client()
        keys = self._keys
        with self._guard(action):
            try:
                return script(keys=keys, args=list(args), client=client)
            except redis.ResponseError as error:
                self._recreate_group(client, error, warn=True)
                return script(keys=keys, args=list(args), client=client)

    def _recreate_group(
        self, client: redis.Redis, error: redis.ResponseError, *, warn: bool = False
    ) -> None:
        """Re-raise ``error`` unless it says the consumer group is missing; then create it.

        The stream or group vanishes on FLUSHDB, or when Redis restarts without
        persistence; the caller then tries once more (or answers as for an empty spool).
        """
        if "NOGROUP" not in str(error):
            raise error
        if warn:
            logger.warning(
                "Redis spool %s: consumer group %r missing; recreating it", self.url, self.group
            )
        schema.create_group(client, self.stream, self.group)
        self._watch.seen(client, client.hget(self._keys.meta, "epoch"), None, None)

    # -- the Spool interface --------------------------------------------------------

    def append(self, entries: Sequence[tuple[bytes, bytes]], *, now: float) -> None:
        """``XADD`` each visitor (one script call, bounds enforced in it).

        Raises:
            SpoolError: Redis is unreachable or refused the write.
        """
        if not entries:
            return
        self._seen(self._run(self._scripts.append, self._append_args(entries, now), "append"))

    def _append_args(self, entries: Sequence[tuple[bytes, bytes]], now: float) -> list[Any]:
        """The ``append`` script's arguments for ``entries`` (see :mod:`.scripts`)."""
        envelopes: dict[bytes, bytes] = {}
        pairs: list[bytes] = []
        digests = self._digests
        for envelope, visitor in entries:
            digest = digests.get(envelope) or digests.put(envelope, schema.digest(envelope))
            envelopes.setdefault(digest, envelope)
            pairs.append(digest)
            pairs.append(visitor)
        cutoff = -1.0
        if now - self._last_age_check >= bounds.AGE_CHECK_EVERY:
            self._last_age_check = now
            cutoff = now - self.max_event_age
        args: list[Any] = [
            self.group,
            self.max_spool_events,
            self.max_spool_bytes,
            repr(cutoff),
            repr(now),
            len(envelopes),
        ]
        for digest, envelope in envelopes.items():
            args.append(digest)
            args.append(envelope)
        args.extend(pairs)
        return args

    def claim(
        self, *, max_records: int, max_bytes: int, lease: float, now: float
    ) -> list[SpoolRecord]:
        """Lease up to ``max_records`` records of one envelope (see :mod:`.scripts`)."""
        if max_records <= 0:
            return []
        lease_ms = max(1, int(lease * 1000))
        self._lease_ms = lease_ms
        out = self._run(
            self._scripts.claim,
            [self.group, self.consumer, repr(now), lease_ms, max_records, max_bytes],
            "claim",
        )
        return schema.records(out) if out else []

    def _seen(self, reading: Any) -> None:
        """Hand a script's ``reading()`` (epoch, sequence number, depth) to the watch."""
        epoch, seq, depth = reading
        self._watch.seen(self._client(), epoch, int(seq), int(depth))

    def _each_chunk(
        self, ids: Sequence[int | str], script: Script, head: list[Any], action: str
    ) -> list[Any]:
        answers = []
        for start in range(0, len(ids), _CHUNK):
            chunk = [str(i) for i in ids[start : start + _CHUNK]]
            answers.append(self._run(script, [*head, *chunk], action))
        return answers

    def ack(self, ids: Sequence[int | str]) -> None:
        """``XACK`` + ``XDEL`` the delivered records."""
        for reading in self._each_chunk(ids, self._scripts.ack, [self.group], "ack"):
            self._seen(reading)

    def retry(
        self,
        ids: Sequence[int | str],
        *,
        attempts: int,
        first_attempt_at: float,
        next_attempt_at: float,
    ) -> None:
        """Move the records to the retry schedule (``S:retry``) until ``next_attempt_at``."""
        head = [self.group, attempts, repr(first_attempt_at), repr(next_attempt_at)]
        self._each_chunk(ids, self._scripts.retry, head, "retry")

    def dead_letter(
        self,
        ids: Sequence[int | str],
        *,
        reason: str,
        now: float,
        attempts: int | None = None,
    ) -> None:
        """Move the records to the dead-letter stream with ``reason`` (and ``attempts``)."""
        made = "" if attempts is None else str(attempts)
        head = [self.group, reason, repr(now), self.max_dead_letters, made]
        for reading in self._each_chunk(ids, self._scripts.dead_letter, head, "dead_letter"):
            self._seen(reading)

    def next_due_at(self, *, now: float) -> float | None:
        """``now`` when entries wait unread or a lease expired; else the next retry time."""
        client = self._client()
        with self._guard("next_due_at"):
            try:
                return schema.read_due_at(
                    client, self._keys, self.group, now=now, lease_ms=self._lease_ms
                )
            except redis.ResponseError as error:
                self._recreate_group(client, error)
                return now if client.xlen(self.stream) else None

    def stats(self, *, now: float) -> SpoolStats:
        """Depth (stream + schedule), bytes, pending entries, oldest record, counters."""
        client = self._client()
        with self._guard("stats"):
            try:
                stats, epoch, seq = schema.read_stats(client, self._keys, self.group)
            except redis.ResponseError as error:
                self._recreate_group(client, error)
                stats, epoch, seq = schema.read_stats(client, self._keys, self.group)
            self._watch.seen(client, epoch, seq, stats.depth)
        return replace(stats, lost=self._watch.lost)

    def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` entries of the dead-letter stream."""
        client = self._client()
        with self._guard("dead_letters"):
            entries = cast(
                "list[tuple[bytes, dict[bytes, bytes]]]",
                client.xrange(self.dead_stream, "-", "+", limit),
            )
            digests = sorted({bytes(f[b"e"]) for _, f in entries} - self._envelopes.keys())
            if digests:
                bodies = cast("list[bytes | None]", client.hmget(self._keys.envelopes, digests))
                for digest, body in zip(digests, bodies, strict=True):
                    self._envelopes[digest] = bytes(body or b"")
        return [
            schema.dead_letter(entry_id, f, self._envelopes.get(bytes(f[b"e"]), b""))
            for entry_id, f in entries
        ]

    def _move_dead(self, mode: str, reason: str | None, now: float) -> int:
        total = 0
        start = "-"
        while True:
            args = [self.group, reason or "", repr(now), start, _CHUNK, mode]
            args += [self.max_spool_events, self.max_spool_bytes]
            moved, nxt = self._run(self._scripts.move_dead, args, f"{mode} dead letters")
            total += int(moved)
            if not nxt:
                return total
            start = schema.text(nxt)

    def replay_dead_letters(self, *, reason: str | None = None, now: float) -> int:
        """Re-add dead letters to the stream as fresh records (``enqueued_at = now``)."""
        count = self._move_dead("replay", reason, now)
        if count:
            logger.info("Redis spool %s: replayed %d dead letter(s)", self.url, count)
        return count

    def purge_dead_letters(self, *, reason: str | None = None) -> int:
        """Delete dead letters (of ``reason``, or all)."""
        count = self._move_dead("purge", reason, time.time())
        if count:
            logger.info("Redis spool %s: purged %d dead letter(s)", self.url, count)
        return count

    # -- extras beyond the Spool protocol --------------------------------------------

    def make_due(self, *, now: float) -> int:
        """Put every scheduled retry back in the stream now (clears backoff)."""
        total = 0
        while True:
            moved = int(self._run(self._scripts.make_due, [], "make_due"))
            total += moved
            if moved < 1000:
                return total

    def delete_all(self) -> None:
        """Delete every key of this spool (tests and decommissioning)."""
        client = self._client()
        with self._guard("delete_all"):
            client.delete(*self._keys)

    def close(self) -> None:
        """Close this process's connections. Idempotent."""
        self._connection.close()

    def __repr__(self) -> str:
        return (
            f"RedisSpool({shown_url(self.url)}, group={self.group!r}, consumer={self.consumer!r})"
        )
