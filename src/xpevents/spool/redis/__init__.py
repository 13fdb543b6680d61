"""The Redis spool (``redis://host:port/db?stream=NAME``): durable, shared by many machines.

:class:`RedisSpool` is in ``spool.py``; the URL and its options in ``url.py``; the keys
and what their entries hold in ``schema.py``; the Lua scripts that move records
between them (``lua/*.lua``) in ``scripts.py``.

Importing this package imports redis-py; :mod:`xpevents.spool` loads it only when a
Redis spool is asked for.
"""

from xpevents.spool.redis.schema import DEFAULT_GROUP, DEFAULT_STREAM, FORMAT_NAME, SCHEMA_VERSION
from xpevents.spool.redis.spool import RedisSpool
from xpevents.spool.redis.url import split_url

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_STREAM",
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "RedisSpool",
    "split_url",
]
