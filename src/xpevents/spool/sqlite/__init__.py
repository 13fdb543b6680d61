"""The SQLite spool (``sqlite:///path``): durable, shared by the processes of one machine.

:class:`SqliteSpool` is in ``spool.py`` (why SQLite, WAL and ``BEGIN IMMEDIATE``: see
there); the tables and the migration of older files in ``schema.py``; the file, its
URL and the meaning of SQLite's errors in ``files.py``; the statements that keep the
counters in step with the rows in ``tables.py``.
"""

from xpevents.spool.bounds import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEAD_LETTERS,
    DEFAULT_MAX_EVENTS,
)
from xpevents.spool.sqlite.files import path_from_url
from xpevents.spool.sqlite.schema import FORMAT_NAME, SCHEMA_VERSION
from xpevents.spool.sqlite.spool import SqliteSpool

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
