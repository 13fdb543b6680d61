"""The Redis spool (``redis://host:port/db?stream=NAME``): durable, shared by many machines.

Importing it imports redis-py; :mod:`xpevents.spool` loads it only when asked for.
"""

from xpevents.spool.redis.spool import (
    DEFAULT_GROUP,
    DEFAULT_STREAM,
    FORMAT_NAME,
    SCHEMA_VERSION,
    RedisSpool,
    split_url,
)

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_STREAM",
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "RedisSpool",
    "split_url",
]
