"""Profiles in Redis, shared by many machines: one hash per user, optional TTL.

A profile is the hash ``<prefix><user_id>`` with one field per experiment id (the value
is the variation id): a save is ``HSET`` (a merge) plus ``EXPIRE`` when a TTL is set, a
lookup is ``HGETALL``; the batch calls pipeline them (one round trip). The socket timeout
is a few milliseconds: a slow or dead Redis costs a decision at most that, once; then the
store rests for ``retry_after`` seconds (calls are skipped and counted), so that a dead
Redis costs nothing while it is down.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from xpevents._internal.redact import redact_url
from xpevents._internal.validate import positive_seconds
from xpevents.errors import ConfigError
from xpevents.profiles.base import BucketMap, ProfileStore

__all__ = ["RedisProfileStore"]


class RedisProfileStore(ProfileStore):
    """A user profile service in Redis.

    Args:
        url: the Redis URL. Default ``redis://127.0.0.1:6379/0``.
        prefix: the key prefix. Default ``"xpevents:profile:"``.
        ttl: seconds a profile lives after its last save (``None``: forever). Default
            ``None``.
        socket_timeout: the bound on one call, connecting included, in seconds.
            Default 0.005.
        retry_after: after a failure, calls are skipped for this many seconds.
            Default 1.0.
        client: a ``redis.Redis`` to use instead of ``url`` (its own timeouts apply).

    Thread-safe and fork-safe (redis-py's pool reconnects in a child).
    """

    name = "Redis profiles"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "xpevents:profile:",
        ttl: float | None = None,
        socket_timeout: float = 0.005,
        retry_after: float = 1.0,
        client: redis.Redis | None = None,
    ) -> None:
        super().__init__()
        owner = "RedisProfileStore"
        self.socket_timeout = positive_seconds("socket_timeout", socket_timeout, owner=owner)
        self.retry_after = positive_seconds(
            "retry_after", retry_after, owner=owner, allow_zero=True
        )
        self.ttl = None if ttl is None else positive_seconds("ttl", ttl, owner=owner)
        if not isinstance(prefix, str):
            raise ConfigError(f"{owner}(prefix={prefix!r}): expected a str")
        self.prefix = prefix
        self.url = redact_url(url)
        if client is None:
            try:
                client = redis.Redis.from_url(
                    url,
                    socket_timeout=self.socket_timeout,
                    socket_connect_timeout=self.socket_timeout,
                    retry_on_timeout=False,
                    decode_responses=True,
                )
            except ValueError as exc:
                raise ConfigError(f"{owner}(url={self.url!r}): {exc}") from None
        self._redis = client
        self._resting_until = 0.0

    def _is_timeout(self, exc: BaseException) -> bool:
        return isinstance(exc, redis.TimeoutError | TimeoutError)

    def _ready(self) -> bool:
        if self._resting_until and time.monotonic() < self._resting_until:
            self._count("skipped")
            return False
        return True

    def _failed(self, what: str, exc: BaseException) -> None:
        self._resting_until = time.monotonic() + self.retry_after
        super()._failed(what, exc)

    def _fetch(self, user_ids: list[str]) -> dict[str, BucketMap]:
        if not self._ready():
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.hgetall(self.prefix + user_id)
        replies: list[Any] = pipe.execute()
        self._resting_until = 0.0
        return {
            user_id: {_text(k): _text(v) for k, v in reply.items()}
            for user_id, reply in zip(user_ids, replies, strict=True)
            if reply
        }

    def _store(self, batch: dict[str, BucketMap]) -> None:
        if not self._ready():
            return
        pipe = self._redis.pipeline(transaction=False)
        for user_id, entries in batch.items():
            if not entries:
                continue
            key = self.prefix + user_id
            pipe.hset(key, mapping=entries)  # type: ignore[arg-type]
            if self.ttl is not None:
                pipe.expire(key, max(1, round(self.ttl)))
        pipe.execute()
        self._resting_until = 0.0

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()

    def __repr__(self) -> str:
        return f"RedisProfileStore(url={self.url!r}, prefix={self.prefix!r}, ttl={self.ttl})"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
