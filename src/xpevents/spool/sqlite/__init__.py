"""The SQLite spool (``sqlite:///path``): durable, shared by the processes of one machine."""

from xpevents.spool.sqlite.spool import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEAD_LETTERS,
    DEFAULT_MAX_EVENTS,
    FORMAT_NAME,
    SCHEMA_VERSION,
    SqliteSpool,
    path_from_url,
)

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEAD_LETTERS",
    "DEFAULT_MAX_EVENTS",
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "SqliteSpool",
    "path_from_url",
]
