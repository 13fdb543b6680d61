"""The SQLite spool's URL: ``sqlite:///relative.db`` or ``sqlite:////absolute.db``, with
the constructor options it may carry (``?sync=full&busy_timeout=5&checkpoint_pages=500``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from xpevents._internal.names import unknown
from xpevents._internal.redact import redact_url
from xpevents.errors import ConfigError

__all__ = ["DEFAULT_CHECKPOINT_PAGES", "options_from_url", "path_from_url"]

DEFAULT_CHECKPOINT_PAGES = 1000
"""SQLite's own ``wal_autocheckpoint`` (pages of write-ahead log per checkpoint)."""
_URL_OPTIONS: dict[str, tuple[type, str]] = {
    "sync": (str, "'normal' or 'full'"),
    "busy_timeout": (float, "a number"),
    "checkpoint_pages": (int, "a whole number (write-ahead log pages, e.g. 1000)"),
}


def path_from_url(url: str) -> tuple[str, dict[str, str]]:
    """Split ``sqlite:///relative.db`` / ``sqlite:////abs.db?sync=full`` into path and options.

    Raises:
        ConfigError: not an SQLite spool URL.
    """
    try:
        parts = urlsplit(url)
    except ValueError as error:  # "Invalid IPv6 URL"...
        raise ConfigError(f"spool URL {redact_url(url)!r}: not a valid URL ({error})") from None
    if parts.scheme != "sqlite" or not url.startswith("sqlite://"):
        raise ConfigError(
            f"spool URL {redact_url(url)!r}: SQLite URLs start with 'sqlite://'; use "
            "'sqlite:///relative/path.db' or 'sqlite:////absolute/path.db' (three or four slashes)"
        )
    if parts.netloc:
        raise ConfigError(
            f"spool URL {redact_url(url)!r}: SQLite URLs have no host; use "
            "'sqlite:///relative/path.db' or 'sqlite:////absolute/path.db' (three or four slashes)"
        )
    path = unquote(parts.path)
    if path.startswith("/"):
        path = path[1:]  # sqlite:///rel.db -> "rel.db"; sqlite:////abs.db -> "/abs.db"
    if not path or path.endswith("/"):
        raise ConfigError(
            f"spool URL {redact_url(url)!r}: no file name; use 'sqlite:///relative/path.db' or "
            "'sqlite:////absolute/path.db'"
        )
    if path == ":memory:":
        raise ConfigError(
            f"spool URL {redact_url(url)!r}: an in-memory SQLite database is not durable; use 'memory://'"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    return path, options


def options_from_url(url: str) -> tuple[str, dict[str, Any]]:
    """The path and the constructor options (``sync``, ``busy_timeout``,
    ``checkpoint_pages``) of a spool URL.

    Raises:
        ConfigError: not an SQLite spool URL, or an unknown or invalid option.
    """
    path, query = path_from_url(url)
    options: dict[str, Any] = {}
    for key, value in query.items():
        if key not in _URL_OPTIONS:
            problem = unknown("option", key, tuple(_URL_OPTIONS))
            raise ConfigError(f"spool URL {redact_url(url)!r}: {problem}")
        kind, expected = _URL_OPTIONS[key]
        try:
            options[key] = kind(value)
        except ValueError:
            raise ConfigError(
                f"spool URL {redact_url(url)!r}: {key}={value!r} is not {expected}"
            ) from None
    return path, options
