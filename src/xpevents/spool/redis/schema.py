"""The keys of a Redis spool, what their entries hold, and how a spool is set up on them.

Keys, for a stream named ``S`` (give ``S`` a hash tag such as ``{xpevents}`` on Redis
Cluster so that every key lands in one slot):

``S``
    the stream. Each entry is one visitor: fields ``e`` (envelope digest), ``v``
    (visitor bytes), ``t`` (enqueued_at), ``a`` (attempts), ``f`` (first_attempt_at or
    empty).
``S:envelopes``
    hash digest -> envelope bytes (envelopes are interned: one copy per envelope).
``S:retry``, ``S:retry:age``, ``S:retry:data``
    the retry schedule: records waiting for their next attempt, by next-attempt time
    (zset), by enqueue time (zset, for age bounds and stats) and their data (hash of
    msgpack).
``S:dead``
    the dead-letter stream (fields of the entry plus ``r`` reason and ``x`` failed_at).
``S:meta``
    hash: ``format``, ``schema_version``, ``bytes`` (visitor bytes in the spool),
    ``dead:<reason>`` and ``evicted:<reason>`` counters.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import redis

from xpevents.errors import SpoolError
from xpevents.spool.base import DeadLetter, SpoolRecord, SpoolStats

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_STREAM",
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "Keys",
    "create_group",
    "dead_letter",
    "digest",
    "prepare",
    "read_due_at",
    "read_stats",
    "records",
    "text",
    "unreachable",
]

SCHEMA_VERSION = 1
FORMAT_NAME = "xpevents-spool"
DEFAULT_STREAM = "xpevents"
DEFAULT_GROUP = "xpevents"

_STALE_CONSUMER_MS = 24 * 3600 * 1000


class Keys(NamedTuple):
    """The keys of the spool on stream ``stream`` (see the module docstring), in the
    order every script receives them as ``KEYS`` (see ``lua/prelude.lua``)."""

    stream: str
    envelopes: str
    meta: str
    retry: str
    retry_age: str
    retry_data: str
    dead: str

    @classmethod
    def of(cls, stream: str, dead_stream: str) -> Keys:
        """The keys of the spool on ``stream``, with its dead letters in ``dead_stream``."""
        return cls(
            stream,
            f"{stream}:envelopes",
            f"{stream}:meta",
            f"{stream}:retry",
            f"{stream}:retry:age",
            f"{stream}:retry:data",
            dead_stream,
        )


def digest(envelope: bytes) -> bytes:
    """The field an envelope is interned under in ``S:envelopes``."""
    return hashlib.blake2b(envelope, digest_size=16).hexdigest().encode()


def text(value: Any) -> str:
    """A Redis reply (bytes, or an int) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def prepare(client: redis.Redis, keys: Keys, group: str, url: str) -> None:
    """Check that Redis answers and the keys hold a spool this version reads; create the
    consumer group.

    Raises:
        SpoolError: Redis cannot be reached, the stream key holds something else, or
            the spool was written by a newer xpevents.
    """
    try:
        client.ping()
    except redis.RedisError as error:
        raise SpoolError(f"Redis spool {url}: {unreachable(client, error)}") from error
    try:
        kind = text(client.type(keys.stream))
        if kind not in ("stream", "none"):
            raise SpoolError(
                f"Redis spool {url}: key {keys.stream!r} holds a {kind}, not a "
                "stream; choose another stream name (?stream=NAME)"
            )
        version = client.hget(keys.meta, "schema_version")
        if version is not None and int(version) > SCHEMA_VERSION:
            raise SpoolError(
                f"Redis spool {url}: written by a newer xpevents (spool schema "
                f"{int(version)}, this version reads up to {SCHEMA_VERSION}); upgrade "
                "xpevents or use another stream"
            )
        client.hsetnx(keys.meta, "format", FORMAT_NAME)
        client.hsetnx(keys.meta, "schema_version", str(SCHEMA_VERSION))
        create_group(client, keys.stream, group)
        _forget_stale_consumers(client, keys.stream, group)
    except redis.RedisError as error:
        raise SpoolError(f"Redis spool {url}: cannot set up: {error}") from error


def unreachable(client: redis.Redis, error: redis.RedisError) -> str:
    """What ``error``, raised by the first command on ``client``, means for the user.

    Redis refuses ``SELECT`` of a database it does not have ("DB index is out of
    range"): that Redis was reached, so the message names the database and the range
    the server allows (its ``databases`` setting, read with ``CONFIG GET`` on database
    0; when that is refused, the message says so). Anything else is "cannot reach
    Redis" with what to check.
    """
    if isinstance(error, redis.ResponseError) and "DB index is out of range" in str(error):
        db = client.connection_pool.connection_kwargs.get("db", 0)
        count = _database_count(client)
        if count is None:
            allowed = "the server refused CONFIG GET databases, so the range it allows is unknown"
        else:
            allowed = f"this server allows 0\u2013{count - 1}"
        return (
            f"Redis has no database {db} ({allowed}); choose another database number "
            "in the URL (redis://host:port/0)"
        )
    return (
        f"cannot reach Redis ({error}); start Redis, or fix the host, port or password in the URL"
    )


def _database_count(client: redis.Redis) -> int | None:
    """The server's ``databases`` setting, asked on database 0, or ``None`` if refused."""
    pool = client.connection_pool
    connection = pool.connection_class(**{**pool.connection_kwargs, "db": 0})
    try:
        connection.send_command("CONFIG", "GET", "databases")
        reply = connection.read_response()
        # RESP2: [b"databases", b"16"]; RESP3: {b"databases": b"16"}
        values = list(reply.values()) if isinstance(reply, dict) else list(reply)[1:]
        return int(values[0])
    except (redis.RedisError, OSError, ValueError, IndexError, TypeError):
        return None
    finally:
        connection.disconnect()


def create_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) unless it exists."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def _forget_stale_consumers(client: redis.Redis, stream: str, group: str) -> None:
    # Consumers named after dead processes accumulate; drop those idle for a day
    # with nothing pending (a consumer with pending entries keeps them reclaimable).
    with contextlib.suppress(redis.RedisError):
        for info in client.xinfo_consumers(stream, group):
            if int(info.get("pending", 0)) == 0 and int(info.get("idle", 0)) > (_STALE_CONSUMER_MS):
                client.xgroup_delconsumer(stream, group, info["name"])


def records(out: Sequence[Any]) -> list[SpoolRecord]:
    """The records of a ``claim`` script's reply: the envelope, then five fields per
    record (id, visitor, enqueued_at, attempts, first_attempt_at or empty)."""
    envelope = bytes(out[0])
    leased = []
    for i in range(1, len(out), 5):
        first = out[i + 4]
        leased.append(
            SpoolRecord(
                id=text(out[i]),
                envelope=envelope,
                visitor=bytes(out[i + 1]),
                enqueued_at=float(out[i + 2]),
                attempts=int(out[i + 3]),
                first_attempt_at=float(first) if first else None,
            )
        )
    return leased


def read_due_at(
    client: redis.Redis, keys: Keys, group: str, *, now: float, lease_ms: int
) -> float | None:
    """When a record is next claimable: ``now`` when entries wait unread or a lease
    expired; else when the oldest lease expires or the first retry is due; ``None``
    when the spool is empty."""
    pipe = client.pipeline(transaction=False)
    pipe.xlen(keys.stream)
    pipe.xpending(keys.stream, group)
    pipe.xpending_range(keys.stream, group, "-", "+", 1)
    pipe.xpending_range(keys.stream, group, "-", "+", 1, idle=lease_ms)
    pipe.zrange(keys.retry, 0, 0, withscores=True)
    length, pending, oldest, expired, first_retry = pipe.execute()
    pending_count = int(pending["pending"]) if pending else 0
    if length > pending_count or expired:
        return now
    candidates: list[float] = []
    if oldest:
        idle = float(oldest[0]["time_since_delivered"]) / 1000.0
        candidates.append(now + max(0.0, lease_ms / 1000.0 - idle))
    if first_retry:
        candidates.append(float(first_retry[0][1]))
    if not candidates:
        return None
    due = min(candidates)
    return now if due <= now else due


def read_stats(client: redis.Redis, keys: Keys, group: str) -> tuple[SpoolStats, bytes | None, int]:
    """Depth (stream + schedule), bytes, pending entries, oldest record, counters; with
    the epoch and sequence number read in the same transaction (see :mod:`.losses`)."""
    pipe = client.pipeline(transaction=True)
    pipe.xlen(keys.stream)
    pipe.zcard(keys.retry)
    pipe.hgetall(keys.meta)
    pipe.xrange(keys.stream, "-", "+", 1)
    pipe.zrange(keys.retry_age, 0, 0, withscores=True)
    pipe.xpending(keys.stream, group)
    length, scheduled, meta, head, oldest_retry, pending = pipe.execute()
    dead: dict[str, int] = {}
    evicted: dict[str, int] = {}
    nbytes = 0
    epoch: bytes | None = None
    seq = 0
    for key, value in meta.items():
        name = text(key)
        if name == "bytes":
            nbytes = int(value)
        elif name == "epoch":
            epoch = value
        elif name == "seq":
            seq = int(value)
        elif name.startswith("dead:") and int(value) > 0:
            dead[name[5:]] = int(value)
        elif name.startswith("evicted:") and int(value) > 0:
            evicted[name[8:]] = int(value)
    oldest: float | None = None
    if head:
        oldest = float(head[0][1][b"t"])
    if oldest_retry:
        t = float(oldest_retry[0][1])
        oldest = t if oldest is None else min(oldest, t)
    stats = SpoolStats(
        depth=int(length) + int(scheduled),
        bytes=nbytes,
        leased=int(pending["pending"]) if pending else 0,
        oldest_enqueued_at=oldest,
        dead_letters=MappingProxyType(dead),
        evicted=MappingProxyType(evicted),
    )
    return stats, epoch, seq


def dead_letter(entry_id: Any, fields: Mapping[bytes, bytes], envelope: bytes) -> DeadLetter:
    """A :class:`DeadLetter` from an entry of the dead-letter stream."""
    return DeadLetter(
        id=text(entry_id),
        envelope=envelope,
        visitor=bytes(fields[b"v"]),
        reason=text(fields[b"r"]),
        failed_at=float(fields[b"x"]),
        attempts=int(fields[b"a"]),
    )
