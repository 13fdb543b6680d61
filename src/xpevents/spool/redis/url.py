"""The Redis spool's URL: ``redis://host:port/db?stream=NAME&group=GROUP&consumer=NAME&dead=NAME``.

* ``stream`` (default ``xpevents``): the stream every producer appends to;
* ``group`` (default ``xpevents``): the consumer group every sender reads through;
* ``consumer`` (default ``<hostname>-<pid>``): this process's name in the group;
* ``dead`` (default ``<stream>:dead``): the dead-letter stream.

Other query parameters go to redis-py when it knows them (``socket_timeout``,
``health_check_interval``, ``password``, ``client_name``, ``ssl_*`` for ``rediss://``...);
an unknown one is a :class:`~xpevents.ConfigError` naming it (a typo such as ``strem``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.connection import URL_QUERY_ARGUMENT_PARSERS
from redis.retry import Retry

from xpevents._internal.names import unknown
from xpevents._internal.redact import redact_url
from xpevents.errors import ConfigError
from xpevents.spool.redis.schema import DEFAULT_GROUP, DEFAULT_STREAM

__all__ = ["async_factory", "from_url", "split_url"]

_OURS = ("stream", "group", "consumer", "dead")
_CLIENT: Final[dict[str, Any]] = {
    "decode_responses": False,
    "socket_connect_timeout": 2.0,
    "socket_timeout": 5.0,
}
"""The options of both clients (blocking and asyncio) besides their retry."""
_REDIS_OPTIONS = frozenset(URL_QUERY_ARGUMENT_PARSERS) | {"password", "username", "client_name"}


def _known(key: str, scheme: str) -> bool:
    return key in _REDIS_OPTIONS or (scheme == "rediss" and key.startswith("ssl_"))


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Separate the spool's own query parameters from the ones for redis-py.

    Returns the URL for redis-py and a dict with ``stream``, ``group``, ``consumer``
    and ``dead`` when given.

    Raises:
        ConfigError: not a ``redis://``, ``rediss://`` or ``unix://`` URL, or an empty
            spool parameter.
    """
    try:
        parts = urlsplit(url)
    except ValueError as error:  # "Invalid IPv6 URL"...
        raise ConfigError(f"spool URL {redact_url(url)!r}: not a valid URL ({error})") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"spool URL {redact_url(url)!r}: expected 'redis://host:port/db?stream=NAME' "
            "(or rediss://, unix://)"
        )
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OURS:
            if not value:
                raise ConfigError(f"spool URL {redact_url(url)!r}: {key}= must not be empty")
            ours[key] = value
        elif _known(key, parts.scheme):
            rest.append((key, value))
        else:
            redis_py = sorted(_REDIS_OPTIONS)
            listing = f"{', '.join(_OURS)}, and redis-py's {', '.join(redis_py)}"
            problem = unknown("option", key, [*_OURS, *redis_py], listing=listing)
            raise ConfigError(f"spool URL {redact_url(url)!r}: {problem}")
    path = parts.path
    if parts.scheme != "unix" and path not in ("", "/"):
        db = path.lstrip("/")
        if not db.isdigit():
            raise ConfigError(
                f"spool URL {redact_url(url)!r}: the database must be a number (redis://host:port/0)"
            )
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


def from_url(url: str) -> tuple[Callable[[], redis.Redis], str, dict[str, Any]]:
    """What :meth:`RedisSpool.from_url <xpevents.spool.redis.RedisSpool.from_url>` needs
    from ``url``: a function that opens a client, the URL to show (password hidden) and
    the spool's options (``stream``, ``group``, ``consumer``, ``dead_stream``).

    Raises:
        ConfigError: the URL is invalid.
    """
    redis_url, ours = split_url(url)
    options: dict[str, Any] = {
        "stream": ours.get("stream", DEFAULT_STREAM),
        "group": ours.get("group", DEFAULT_GROUP),
        "consumer": ours.get("consumer"),
        "dead_stream": ours.get("dead"),
    }

    def factory() -> redis.Redis:
        with _invalid_url(url):
            return redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 1), **_CLIENT)

    parts = urlsplit(url)
    shown = redact_url(urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])))
    return factory, shown, options


def async_factory(url: str) -> Callable[[], AsyncRedis]:
    """A function that opens an asyncio client to the Redis of ``url``, with the same
    timeouts as :func:`from_url`'s (the relay's appends from its event loop).

    Raises:
        ConfigError: the URL is invalid.
    """
    redis_url, _ = split_url(url)

    def factory() -> AsyncRedis:
        with _invalid_url(url):
            return AsyncRedis.from_url(redis_url, retry=AsyncRetry(NoBackoff(), 1), **_CLIENT)

    return factory


@contextlib.contextmanager
def _invalid_url(url: str) -> Iterator[None]:
    """redis-py's ``ValueError`` for a bad URL as a :class:`ConfigError` naming it."""
    try:
        yield
    except ValueError as error:
        raise ConfigError(f"spool URL {redact_url(url)!r}: {error}") from error
