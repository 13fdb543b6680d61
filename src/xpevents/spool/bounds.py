"""The bounds of a durable spool (SQLite, Redis): records, bytes, age and dead letters.

Both backends take the same four bounds with the same defaults and checks; each
enforces them in its own write path (in the SQL transaction, in the Lua script).
"""

from __future__ import annotations

from typing import Final

from xpevents._internal.validate import positive_int, positive_number

__all__ = [
    "AGE_CHECK_EVERY",
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEAD_LETTERS",
    "DEFAULT_MAX_EVENTS",
    "check_bounds",
]

DEFAULT_MAX_EVENTS: Final = 10_000_000
DEFAULT_MAX_BYTES: Final = 1 << 30
DEFAULT_MAX_AGE: Final = 7 * 86400.0
DEFAULT_MAX_DEAD_LETTERS: Final = 1_000_000

AGE_CHECK_EVERY: Final = 1.0
"""Seconds between two checks of ``max_event_age`` on append: finding the records that
are too old reads the head of the queue, which is not worth doing on every append."""


def check_bounds(
    owner: str,
    *,
    max_spool_events: object,
    max_spool_bytes: object,
    max_event_age: object,
    max_dead_letters: object,
) -> None:
    """Raise :class:`~xpevents.ConfigError` naming ``owner`` for the first bad bound."""
    positive_int("max_spool_events", max_spool_events, owner=owner)
    positive_int("max_spool_bytes", max_spool_bytes, owner=owner)
    positive_number("max_event_age", max_event_age, owner=owner)
    positive_int("max_dead_letters", max_dead_letters, owner=owner)
