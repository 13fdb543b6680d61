"""A durable spool in a Redis stream, shared by many machines.

``redis://host:port/db?stream=NAME&group=GROUP&consumer=NAME&dead=NAME``:

* ``stream`` (default ``xpevents``): the stream every producer appends to;
* ``group`` (default ``xpevents``): the consumer group every sender reads through;
* ``consumer`` (default ``<hostname>-<pid>``): this process's name in the group;
* ``dead`` (default ``<stream>:dead``): the dead-letter stream.

Other query parameters (``socket_timeout``, ``password``...) go to redis-py.

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

How records move (every step is one Lua script, so atomic):

* ``append``: ``XADD`` per visitor; bounds enforced in the same script.
* ``claim``: due retries are re-added to the stream (``XADD`` + removal from the
  schedule); then expired leases are taken over with ``XAUTOCLAIM`` (min idle = the
  lease), then new entries read with ``XREADGROUP ... >``. The oldest candidate's
  envelope is chosen; candidates of other envelopes (or over the byte cap) are handed
  back at once (``XCLAIM ... TIME 1``: their idle time becomes huge, so the next
  ``XAUTOCLAIM`` takes them). The lease of a record is its time in the pending entries
  list: every sender sharing a stream should use the same ``lease``.
* ``ack``: ``XACK`` + ``XDEL``. The stream is trimmed only this way: an entry is
  deleted when it is delivered, moved to the schedule or the dead letters, or evicted
  by the bounds, never by ``MAXLEN``, so unacknowledged entries are never dropped.
* ``retry``: ``XACK`` + ``XDEL`` and the record (attempts, first_attempt_at) goes to
  the schedule until its next attempt time; it then re-enters the stream at its end
  with a new id.
* ``dead_letter``: ``XADD S:dead`` + ``XACK`` + ``XDEL``.

Lease times are measured by the Redis server's clock; enqueue and retry times by the
clients' clocks (keep them in sync with NTP).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from types import MappingProxyType
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from xpevents._internal import forking
from xpevents._internal.cache import BoundedCache
from xpevents._internal.validate import positive_int, positive_number
from xpevents.errors import ConfigError, SpoolError
from xpevents.spool.base import DeadLetter, SpoolRecord, SpoolStats

logger = logging.getLogger("xpevents.spool.redis")

SCHEMA_VERSION = 1
FORMAT_NAME = "xpevents-spool"
DEFAULT_STREAM = "xpevents"
DEFAULT_GROUP = "xpevents"

_CHUNK = 1000
_AGE_CHECK_EVERY = 1.0
_STALE_CONSUMER_MS = 24 * 3600 * 1000


# Shared Lua helpers. KEYS layout for every script:
# 1 stream, 2 envelopes, 3 meta, 4 retry zset, 5 retry:age zset, 6 retry:data hash, 7 dead.
_PRELUDE = """
local S, ENV, META, RZ, RAGE, RDATA, DEAD =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]

local function field(fields, name)
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1] end
  end
  return nil
end

local function count_evicted(reason, n)
  if n > 0 then redis.call('HINCRBY', META, 'evicted:' .. reason, n) end
  return n
end

-- Remove stream entries (by id), return freed bytes.
local function drop_entries(group, entries)
  local freed = 0
  for _, entry in ipairs(entries) do
    local v = field(entry[2], 'v')
    if v then freed = freed + #v end
    redis.call('XACK', S, group, entry[1])
    redis.call('XDEL', S, entry[1])
  end
  if freed > 0 then redis.call('HINCRBY', META, 'bytes', -freed) end
  return freed
end

-- Remove scheduled retries (by member id), return freed bytes.
local function drop_scheduled(ids)
  local freed = 0
  for _, id in ipairs(ids) do
    local packed = redis.call('HGET', RDATA, id)
    if packed then freed = freed + #cmsgpack.unpack(packed)[2] end
    redis.call('ZREM', RZ, id)
    redis.call('ZREM', RAGE, id)
    redis.call('HDEL', RDATA, id)
  end
  if freed > 0 then redis.call('HINCRBY', META, 'bytes', -freed) end
  return freed
end

local function depth()
  return redis.call('XLEN', S) + redis.call('ZCARD', RZ)
end

-- Evict the oldest records (stream head first, then the schedule) until both bounds
-- hold; then, when cutoff >= 0, records enqueued before cutoff. Returns nothing.
local function enforce(group, max_events, max_bytes, cutoff)
  local evicted = 0
  local guard = 0
  while guard < 1000 do
    guard = guard + 1
    local d = depth()
    local b = tonumber(redis.call('HGET', META, 'bytes') or '0')
    if d <= max_events and b <= max_bytes then break end
    local reason = 'max_spool_bytes'
    local n = 1000
    if d > max_events then
      reason = 'max_spool_events'
      n = math.min(d - max_events, 1000)
    end
    local entries = redis.call('XRANGE', S, '-', '+', 'COUNT', n)
    if #entries > 0 then
      if reason == 'max_spool_bytes' then
        local over = b - max_bytes
        local take = {}
        local freed = 0
        for _, entry in ipairs(entries) do
          if freed >= over then break end
          freed = freed + #(field(entry[2], 'v') or '')
          take[#take + 1] = entry
        end
        entries = take
      end
      drop_entries(group, entries)
      count_evicted(reason, #entries)
    else
      local ids = redis.call('ZRANGE', RAGE, 0, n - 1)
      if #ids == 0 then break end
      drop_scheduled(ids)
      count_evicted(reason, #ids)
    end
  end
  if cutoff >= 0 then
    local entries = redis.call('XRANGE', S, '-', '+', 'COUNT', 1000)
    local old = {}
    for _, entry in ipairs(entries) do
      local t = tonumber(field(entry[2], 't') or '0')
      if t < cutoff then old[#old + 1] = entry else break end
    end
    drop_entries(group, old)
    count_evicted('max_event_age', #old)
    local ids = redis.call('ZRANGEBYSCORE', RAGE, '-inf', '(' .. cutoff, 'LIMIT', 0, 1000)
    drop_scheduled(ids)
    count_evicted('max_event_age', #ids)
  end
end
"""

# ARGV: group, max_events, max_bytes, cutoff, now, n_envelopes, digest, body, ...,
#       then digest, visitor pairs.
_APPEND = (
    _PRELUDE
    + """
local group = ARGV[1]
local now = ARGV[5]
local nenv = tonumber(ARGV[6])
local i = 7
for _ = 1, nenv do
  redis.call('HSETNX', ENV, ARGV[i], ARGV[i + 1])
  i = i + 2
end
local total = 0
while i < #ARGV do
  redis.call('XADD', S, '*', 'e', ARGV[i], 'v', ARGV[i + 1], 't', now, 'a', '0', 'f', '')
  total = total + #ARGV[i + 1]
  i = i + 2
end
redis.call('HINCRBY', META, 'bytes', total)
enforce(group, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
return 1
"""
)

# ARGV: group, consumer, now, lease_ms, max_records, max_bytes
_CLAIM = (
    _PRELUDE
    + """
local group, consumer = ARGV[1], ARGV[2]
local now = tonumber(ARGV[3])
local lease_ms = tonumber(ARGV[4])
local max_records = tonumber(ARGV[5])
local max_bytes = tonumber(ARGV[6])
-- 1. due retries go back into the stream
local due = redis.call('ZRANGEBYSCORE', RZ, '-inf', ARGV[3], 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  local packed = redis.call('HGET', RDATA, id)
  if packed then
    local r = cmsgpack.unpack(packed)
    redis.call('XADD', S, '*', 'e', r[1], 'v', r[2], 't', r[3], 'a', r[4], 'f', r[5])
  end
  redis.call('ZREM', RZ, id)
  redis.call('ZREM', RAGE, id)
  redis.call('HDEL', RDATA, id)
end
-- 2. candidates: expired leases, then new entries
local candidates = {}
local reclaimed = redis.call('XAUTOCLAIM', S, group, consumer, lease_ms, '0-0',
  'COUNT', max_records)
for _, entry in ipairs(reclaimed[2]) do
  if entry[2] then candidates[#candidates + 1] = entry end
end
if #candidates < max_records then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer,
    'COUNT', max_records - #candidates, 'STREAMS', S, '>')
  if read and read[1] then
    for _, entry in ipairs(read[1][2]) do candidates[#candidates + 1] = entry end
  end
end
if #candidates == 0 then return {} end
-- 3. one envelope, within the byte cap; hand the rest back at once
local digest = field(candidates[1][2], 'e')
local out = {redis.call('HGET', ENV, digest) or ''}
local total = 0
local taken = 0
local release = {}
for _, entry in ipairs(candidates) do
  local f = entry[2]
  local v = field(f, 'v') or ''
  if field(f, 'e') == digest and taken < max_records
      and (taken == 0 or total + #v <= max_bytes) then
    taken = taken + 1
    total = total + #v
    out[#out + 1] = entry[1]
    out[#out + 1] = v
    out[#out + 1] = field(f, 't') or '0'
    out[#out + 1] = field(f, 'a') or '0'
    out[#out + 1] = field(f, 'f') or ''
  else
    release[#release + 1] = entry[1]
  end
end
if #release > 0 then
  local args = {'XCLAIM', S, group, consumer, 0}
  for _, id in ipairs(release) do args[#args + 1] = id end
  args[#args + 1] = 'TIME'
  args[#args + 1] = 1
  args[#args + 1] = 'JUSTID'
  redis.call(unpack(args))
end
return out
"""
)

# ARGV: group, ids...
_ACK = (
    _PRELUDE
    + """
local entries = {}
for i = 2, #ARGV do
  local found = redis.call('XRANGE', S, ARGV[i], ARGV[i])
  if #found > 0 then entries[#entries + 1] = found[1]
  else redis.call('XACK', S, ARGV[1], ARGV[i]) end
end
drop_entries(ARGV[1], entries)
return #entries
"""
)

# ARGV: group, attempts, first_attempt_at, next_attempt_at, ids...
_RETRY = (
    _PRELUDE
    + """
local group = ARGV[1]
local n = 0
for i = 5, #ARGV do
  local found = redis.call('XRANGE', S, ARGV[i], ARGV[i])
  if #found > 0 then
    local f = found[1][2]
    local id = found[1][1]
    local t = field(f, 't') or '0'
    redis.call('HSET', RDATA, id,
      cmsgpack.pack({field(f, 'e'), field(f, 'v'), t, ARGV[2], ARGV[3]}))
    redis.call('ZADD', RZ, ARGV[4], id)
    redis.call('ZADD', RAGE, t, id)
    redis.call('XACK', S, group, id)
    redis.call('XDEL', S, id)
    n = n + 1
  end
end
return n
"""
)

# ARGV: group, reason, now, max_dead, ids...
_DEAD_LETTER = (
    _PRELUDE
    + """
local group, reason, now = ARGV[1], ARGV[2], ARGV[3]
local max_dead = tonumber(ARGV[4])
local entries = {}
for i = 5, #ARGV do
  local found = redis.call('XRANGE', S, ARGV[i], ARGV[i])
  if #found > 0 then
    local f = found[1][2]
    redis.call('XADD', DEAD, '*', 'e', field(f, 'e'), 'v', field(f, 'v'), 't', field(f, 't'),
      'a', field(f, 'a'), 'f', field(f, 'f'), 'r', reason, 'x', now)
    entries[#entries + 1] = found[1]
  end
end
drop_entries(group, entries)
if #entries > 0 then redis.call('HINCRBY', META, 'dead:' .. reason, #entries) end
local over = redis.call('XLEN', DEAD) - max_dead
while over > 0 do
  local old = redis.call('XRANGE', DEAD, '-', '+', 'COUNT', math.min(over, 1000))
  if #old == 0 then break end
  for _, entry in ipairs(old) do
    redis.call('HINCRBY', META, 'dead:' .. (field(entry[2], 'r') or ''), -1)
    redis.call('XDEL', DEAD, entry[1])
  end
  count_evicted('max_dead_letters', #old)
  over = over - #old
end
return #entries
"""
)

# ARGV: group, reason ('' = all), now, start id, chunk, mode ('replay' | 'purge'),
#       max_events, max_bytes. Returns {moved, next start id or ''}.
_MOVE_DEAD = (
    _PRELUDE
    + """
local group, reason, now, start = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local chunk = tonumber(ARGV[5])
local entries = redis.call('XRANGE', DEAD, start, '+', 'COUNT', chunk)
local moved = 0
local total = 0
for _, entry in ipairs(entries) do
  local f = entry[2]
  local r = field(f, 'r') or ''
  if reason == '' or r == reason then
    if ARGV[6] == 'replay' then
      local v = field(f, 'v')
      redis.call('XADD', S, '*', 'e', field(f, 'e'), 'v', v, 't', now, 'a', '0', 'f', '')
      total = total + #v
    end
    redis.call('XDEL', DEAD, entry[1])
    redis.call('HINCRBY', META, 'dead:' .. r, -1)
    moved = moved + 1
  end
end
if total > 0 then
  redis.call('HINCRBY', META, 'bytes', total)
  enforce(group, tonumber(ARGV[7]), tonumber(ARGV[8]), -1)
end
local nxt = ''
if #entries == chunk then nxt = '(' .. entries[#entries][1] end
return {moved, nxt}
"""
)

# ARGV: (none). Moves up to 1000 scheduled retries into the stream now.
_MAKE_DUE = (
    _PRELUDE
    + """
local ids = redis.call('ZRANGE', RZ, 0, 999)
for _, id in ipairs(ids) do
  local packed = redis.call('HGET', RDATA, id)
  if packed then
    local r = cmsgpack.unpack(packed)
    redis.call('XADD', S, '*', 'e', r[1], 'v', r[2], 't', r[3], 'a', r[4], 'f', r[5])
  end
  redis.call('ZREM', RZ, id)
  redis.call('ZREM', RAGE, id)
  redis.call('HDEL', RDATA, id)
end
return #ids
"""
)


def _digest(envelope: bytes) -> bytes:
    return hashlib.blake2b(envelope, digest_size=16).hexdigest().encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Separate the spool's own query parameters from the ones for redis-py.

    Returns the URL for redis-py and a dict with ``stream``, ``group``, ``consumer``
    and ``dead`` when given.

    Raises:
        ConfigError: not a ``redis://``, ``rediss://`` or ``unix://`` URL, or an empty
            spool parameter.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"spool URL {url!r}: expected 'redis://host:port/db?stream=NAME' "
            "(or rediss://, unix://)"
        )
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ("stream", "group", "consumer", "dead"):
            if not value:
                raise ConfigError(f"spool URL {url!r}: {key}= must not be empty")
            ours[key] = value
        else:
            rest.append((key, value))
    path = parts.path
    if parts.scheme != "unix" and path not in ("", "/"):
        db = path.lstrip("/")
        if not db.isdigit():
            raise ConfigError(
                f"spool URL {url!r}: the database must be a number (redis://host:port/0)"
            )
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


class RedisSpool:
    """A durable spool in a Redis stream with a consumer group, shared by many machines.

    Use :meth:`from_url`. See the module docstring for the keys and how records move.

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
        max_spool_events: int = 10_000_000,
        max_spool_bytes: int = 1 << 30,
        max_event_age: float = 7 * 86400.0,
        max_dead_letters: int = 1_000_000,
        url: str | None = None,
        client_factory: Any = None,
    ) -> None:
        positive_int("max_spool_events", max_spool_events, owner="RedisSpool")
        positive_int("max_spool_bytes", max_spool_bytes, owner="RedisSpool")
        positive_number("max_event_age", max_event_age, owner="RedisSpool")
        positive_int("max_dead_letters", max_dead_letters, owner="RedisSpool")
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
        self._keys = [
            stream,
            f"{stream}:envelopes",
            f"{stream}:meta",
            f"{stream}:retry",
            f"{stream}:retry:age",
            f"{stream}:retry:data",
            self.dead_stream,
        ]
        self._client = client
        self._client_factory = client_factory
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._digests: BoundedCache[bytes, bytes] = BoundedCache(4096)
        self._envelopes: dict[bytes, bytes] = {}
        self._last_age_check = 0.0
        self._lease_ms = 30_000
        self._closed = False
        self._register_scripts()
        self._setup()
        forking.track(self, forking.Stage.STORE)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisSpool:
        """Open ``redis://host:port/db?stream=NAME&group=G&consumer=C&dead=D``.

        Keyword options override the URL's (``stream``, ``group``, ``consumer``,
        ``dead_stream``) and set the bounds.

        Raises:
            ConfigError: the URL is invalid.
            SpoolError: Redis cannot be reached or the keys hold something else.
        """
        redis_url, ours = split_url(url)
        params: dict[str, Any] = {
            "stream": ours.get("stream", DEFAULT_STREAM),
            "group": ours.get("group", DEFAULT_GROUP),
            "consumer": ours.get("consumer"),
            "dead_stream": ours.get("dead"),
        }
        params.update(options)

        def factory() -> redis.Redis:
            try:
                return redis.Redis.from_url(
                    redis_url,
                    decode_responses=False,
                    socket_connect_timeout=2.0,
                    socket_timeout=5.0,
                    retry=Retry(NoBackoff(), 1),
                )
            except ValueError as error:
                raise ConfigError(f"spool URL {url!r}: {error}") from error

        parts = urlsplit(url)
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        return cls(factory(), url=urlunsplit(shown), client_factory=factory, **params)

    # -- plumbing -------------------------------------------------------------------

    def _register_scripts(self) -> None:
        client = self._client
        self._append_script: Script = client.register_script(_APPEND)
        self._claim_script: Script = client.register_script(_CLAIM)
        self._ack_script: Script = client.register_script(_ACK)
        self._retry_script: Script = client.register_script(_RETRY)
        self._dead_script: Script = client.register_script(_DEAD_LETTER)
        self._move_dead_script: Script = client.register_script(_MOVE_DEAD)
        self._make_due_script: Script = client.register_script(_MAKE_DUE)

    def _setup(self) -> None:
        try:
            self._client.ping()
        except redis.RedisError as error:
            raise SpoolError(
                f"Redis spool {self.url}: cannot reach Redis ({error}); start Redis, or "
                "fix the host, port or password in the URL"
            ) from error
        try:
            kind = _text(self._client.type(self.stream))
            if kind not in ("stream", "none"):
                raise SpoolError(
                    f"Redis spool {self.url}: key {self.stream!r} holds a {kind}, not a "
                    "stream; choose another stream name (?stream=NAME)"
                )
            meta_key = self._keys[2]
            version = self._client.hget(meta_key, "schema_version")
            if version is not None and int(version) > SCHEMA_VERSION:
                raise SpoolError(
                    f"Redis spool {self.url}: written by a newer xpevents (spool schema "
                    f"{int(version)}, this version reads up to {SCHEMA_VERSION}); upgrade "
                    "xpevents or use another stream"
                )
            self._client.hsetnx(meta_key, "format", FORMAT_NAME)
            self._client.hsetnx(meta_key, "schema_version", str(SCHEMA_VERSION))
            self._create_group()
            self._forget_stale_consumers()
        except redis.RedisError as error:
            raise SpoolError(f"Redis spool {self.url}: cannot set up: {error}") from error

    def _create_group(self) -> None:
        try:
            self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def _forget_stale_consumers(self) -> None:
        # Consumers named after dead processes accumulate; drop those idle for a day
        # with nothing pending (a consumer with pending entries keeps them reclaimable).
        with contextlib.suppress(redis.RedisError):
            for info in self._client.xinfo_consumers(self.stream, self.group):
                if int(info.get("pending", 0)) == 0 and int(info.get("idle", 0)) > (
                    _STALE_CONSUMER_MS
                ):
                    self._client.xgroup_delconsumer(self.stream, self.group, info["name"])

    def _client_now(self) -> redis.Redis:
        """This process's client (checked under the lock; used without it)."""
        with self._lock:
            self._check_pid()
            return self._client

    def _check_pid(self) -> None:
        if self._closed:
            raise SpoolError(f"Redis spool {self.url} is closed")
        if self._pid != os.getpid():
            # Forked: a new client (never the parent's sockets) and a consumer name of
            # our own, so the parent's and the child's leases stay apart.
            self._pid = os.getpid()
            if self._default_consumer:
                self.consumer = _default_consumer()
            if self._client_factory is not None:
                self._client = self._client_factory()
            else:
                self._client = redis.Redis(
                    connection_pool=self._client.connection_pool.__class__(
                        **self._client.connection_pool.connection_kwargs
                    )
                )
            self._register_scripts()

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as error:
            raise SpoolError(
                f"Redis spool {self.url}: {action} failed: {error}; is Redis up and reachable?"
            ) from error

    def _run(self, script: Script, args: Sequence[Any], action: str) -> Any:
        client = self._client_now()
        with self._guard(action):
            try:
                return script(keys=self._keys, args=list(args), client=client)
            except redis.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                # The stream or group vanished (FLUSHDB, a Redis restarted without
                # persistence): recreate and try once more.
                logger.warning(
                    "Redis spool %s: consumer group %r missing; recreating it",
                    self.url,
                    self.group,
                )
                self._create_group()
                return script(keys=self._keys, args=list(args), client=client)

    def _digest(self, envelope: bytes) -> bytes:
        digest = self._digests.get(envelope)
        if digest is None:
            digest = _digest(envelope)
            self._digests.put(envelope, digest)
        return digest

    # -- the Spool interface --------------------------------------------------------

    def append(self, entries: Sequence[tuple[bytes, bytes]], *, now: float) -> None:
        """``XADD`` each visitor (one script call, bounds enforced in it).

        Raises:
            SpoolError: Redis is unreachable or refused the write.
        """
        if not entries:
            return
        envelopes: dict[bytes, bytes] = {}
        pairs: list[bytes] = []
        for envelope, visitor in entries:
            digest = self._digest(envelope)
            envelopes.setdefault(digest, envelope)
            pairs.append(digest)
            pairs.append(visitor)
        cutoff = -1.0
        if now - self._last_age_check >= _AGE_CHECK_EVERY:
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
        self._run(self._append_script, args, "append")

    def claim(
        self, *, max_records: int, max_bytes: int, lease: float, now: float
    ) -> list[SpoolRecord]:
        """Lease up to ``max_records`` records of one envelope (see the module docstring)."""
        if max_records <= 0:
            return []
        lease_ms = max(1, int(lease * 1000))
        self._lease_ms = lease_ms
        out = self._run(
            self._claim_script,
            [self.group, self.consumer, repr(now), lease_ms, max_records, max_bytes],
            "claim",
        )
        if not out:
            return []
        envelope = bytes(out[0])
        records = []
        for i in range(1, len(out), 5):
            first = out[i + 4]
            records.append(
                SpoolRecord(
                    id=_text(out[i]),
                    envelope=envelope,
                    visitor=bytes(out[i + 1]),
                    enqueued_at=float(out[i + 2]),
                    attempts=int(out[i + 3]),
                    first_attempt_at=float(first) if first else None,
                )
            )
        return records

    def ack(self, ids: Sequence[int | str]) -> None:
        """``XACK`` + ``XDEL`` the delivered records."""
        for start in range(0, len(ids), _CHUNK):
            chunk = [str(i) for i in ids[start : start + _CHUNK]]
            self._run(self._ack_script, [self.group, *chunk], "ack")

    def retry(
        self,
        ids: Sequence[int | str],
        *,
        attempts: int,
        first_attempt_at: float,
        next_attempt_at: float,
    ) -> None:
        """Move the records to the retry schedule (``S:retry``) until ``next_attempt_at``."""
        for start in range(0, len(ids), _CHUNK):
            chunk = [str(i) for i in ids[start : start + _CHUNK]]
            self._run(
                self._retry_script,
                [self.group, attempts, repr(first_attempt_at), repr(next_attempt_at), *chunk],
                "retry",
            )

    def dead_letter(self, ids: Sequence[int | str], *, reason: str, now: float) -> None:
        """Move the records to the dead-letter stream with ``reason``."""
        for start in range(0, len(ids), _CHUNK):
            chunk = [str(i) for i in ids[start : start + _CHUNK]]
            self._run(
                self._dead_script,
                [self.group, reason, repr(now), self.max_dead_letters, *chunk],
                "dead_letter",
            )

    def next_due_at(self, *, now: float) -> float | None:
        """``now`` when entries wait unread or a lease expired; else the next retry time."""
        client = self._client_now()
        with self._guard("next_due_at"):
            pipe = client.pipeline(transaction=False)
            pipe.xlen(self.stream)
            pipe.xpending(self.stream, self.group)
            pipe.xpending_range(self.stream, self.group, "-", "+", 1)
            pipe.xpending_range(self.stream, self.group, "-", "+", 1, idle=self._lease_ms)
            pipe.zrange(self._keys[3], 0, 0, withscores=True)
            try:
                length, pending, oldest, expired, first_retry = pipe.execute()
            except redis.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                self._create_group()
                return now if client.xlen(self.stream) else None
        candidates: list[float] = []
        pending_count = int(pending["pending"]) if pending else 0
        if length > pending_count or expired:
            return now
        if oldest:
            idle = float(oldest[0]["time_since_delivered"]) / 1000.0
            candidates.append(now + max(0.0, self._lease_ms / 1000.0 - idle))
        if first_retry:
            candidates.append(float(first_retry[0][1]))
        if not candidates:
            return None
        due = min(candidates)
        return now if due <= now else due

    def stats(self, *, now: float) -> SpoolStats:
        """Depth (stream + schedule), bytes, pending entries, oldest record, counters."""
        client = self._client_now()
        with self._guard("stats"):
            pipe = client.pipeline(transaction=True)
            pipe.xlen(self.stream)
            pipe.zcard(self._keys[3])
            pipe.hgetall(self._keys[2])
            pipe.xrange(self.stream, "-", "+", 1)
            pipe.zrange(self._keys[4], 0, 0, withscores=True)
            pipe.xpending(self.stream, self.group)
            try:
                length, scheduled, meta, head, oldest_retry, pending = pipe.execute()
            except redis.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                self._create_group()
                return SpoolStats()
        dead: dict[str, int] = {}
        evicted: dict[str, int] = {}
        nbytes = 0
        for key, value in meta.items():
            name = _text(key)
            if name == "bytes":
                nbytes = int(value)
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
        return SpoolStats(
            depth=int(length) + int(scheduled),
            bytes=nbytes,
            leased=int(pending["pending"]) if pending else 0,
            oldest_enqueued_at=oldest,
            dead_letters=MappingProxyType(dead),
            evicted=MappingProxyType(evicted),
        )

    def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` entries of the dead-letter stream."""
        client = self._client_now()
        with self._guard("dead_letters"):
            entries = cast(
                "list[tuple[bytes, dict[bytes, bytes]]]",
                client.xrange(self.dead_stream, "-", "+", limit),
            )
            digests = sorted({bytes(f[b"e"]) for _, f in entries} - self._envelopes.keys())
            if digests:
                bodies = cast("list[bytes | None]", client.hmget(self._keys[1], digests))
                for digest, body in zip(digests, bodies, strict=True):
                    self._envelopes[digest] = bytes(body or b"")
        return [
            DeadLetter(
                id=_text(entry_id),
                envelope=self._envelopes.get(bytes(f[b"e"]), b""),
                visitor=bytes(f[b"v"]),
                reason=_text(f[b"r"]),
                failed_at=float(f[b"x"]),
                attempts=int(f[b"a"]),
            )
            for entry_id, f in entries
        ]

    def _move_dead(self, mode: str, reason: str | None, now: float) -> int:
        total = 0
        start = "-"
        while True:
            moved, nxt = self._run(
                self._move_dead_script,
                [
                    self.group,
                    reason or "",
                    repr(now),
                    start,
                    _CHUNK,
                    mode,
                    self.max_spool_events,
                    self.max_spool_bytes,
                ],
                f"{mode} dead letters",
            )
            total += int(moved)
            if not nxt:
                return total
            start = _text(nxt)

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
            moved = int(self._run(self._make_due_script, [], "make_due"))
            total += moved
            if moved < 1000:
                return total

    def delete_all(self) -> None:
        """Delete every key of this spool (tests and decommissioning)."""
        client = self._client_now()
        with self._guard("delete_all"):
            client.delete(*self._keys)

    def _reset_after_fork(self) -> None:
        # The parent may have held the lock at fork time; the child gets a free one.
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close this process's connections. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._pid == os.getpid():
                with contextlib.suppress(redis.RedisError):
                    self._client.close()
        forking.untrack(self)

    def __enter__(self) -> RedisSpool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisSpool({self.url!r}, group={self.group!r}, consumer={self.consumer!r})"
