"""The SQLite spool (``sqlite:///path``): durable, shared by the processes of one machine.

:class:`SqliteSpool` is in ``spool.py`` (why SQLite, WAL and ``BEGIN IMMEDIATE``: see
there); the tables and the migration of older files in ``schema.py``; the file and
the meaning of SQLite's errors in ``files.py``, its URL in ``url.py``; the statements
that keep the counters in step with the rows in ``tables.py``; the background
checkpoints of the relay's forwarding child in ``backfill.py``.
"""

from xpevents.spool.bounds import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEAD_LETTERS,
    DEFAULT_MAX_EVENTS,
)
from xpevents.spool.sqlite.schema import FORMAT_NAME, SCHEMA_VERSION
from xpevents.spool.sqlite.spool import SqliteSpool
from xpevents.spool.sqlite.url import path_from_url

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
