"""Where an event goes: the event's own URL, or the dispatcher's ``endpoint``."""

from __future__ import annotations

import difflib
import logging
import urllib.parse

from xpevents._internal.redact import redact_url
from xpevents.errors import ConfigError

US_PATH = "/v1/events"
EU_PATH = "/eu/v1/events"

logger = logging.getLogger("xpevents.dispatch")


def check_event_path(endpoint: str) -> str | None:
    """A warning when ``endpoint``'s path is not an event API path, else ``None``.

    The event API, the relay and the collector accept ``/v1/events`` and
    ``/eu/v1/events`` only (a proxy in front may add a prefix: ``/xp/v1/events`` is
    fine). Anything else is most likely a typo that every send would find out (404,
    dead-lettered): say so once, at construction.
    """
    path = urllib.parse.urlsplit(endpoint).path.rstrip("/")
    if path.endswith(US_PATH):
        return None
    guess = difflib.get_close_matches(path, [US_PATH, EU_PATH], n=1, cutoff=0.6)
    hint = f"did you mean {guess[0]!r}? " if guess else ""
    return (
        f"endpoint={redact_url(endpoint)!r}: the path {path or '/'!r} is not an event API "
        f"path ({US_PATH} or {EU_PATH}); the event API, xpevents relay and collector "
        f"refuse anything else (HTTP 404, dead-lettered). {hint}"
        "A base URL without a path (http://host:port) picks the right one per event."
    )


def validate_url(url: object, *, argument: str) -> str:
    """Return ``url`` if it is an absolute http(s) URL with a host, else raise ConfigError."""
    if not isinstance(url, str):
        raise ConfigError(
            f"{argument}={url!r}: expected an http(s) URL string, got {type(url).__name__}"
        )
    if any(c.isspace() for c in url):
        raise ConfigError(f"{argument}={url!r}: a URL has no spaces; remove them")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{argument}={redact_url(url)!r}: expected an absolute http:// or https:// URL "
            "with a host, "
            "e.g. 'http://127.0.0.1:8787' or 'https://logx.optimizely.com/v1/events'"
        )
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        raise ConfigError(
            f"{argument}={url!r}: the port must be a number from 1 to 65535"
        ) from None
    return url


def is_eu_url(url: str) -> bool:
    """True when ``url`` is the Event API's EU endpoint (or a relay's EU path)."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    return host.startswith("eu.") or parts.path.startswith("/eu/")


class EndpointRouter:
    """Maps an event's URL to the URL a dispatcher actually posts to.

    * ``endpoint=None``: the event's own URL.
    * a full URL with a path (``http://relay:8787/ingest``): everything goes there.
    * a base URL without a path (``http://127.0.0.1:8787``): the Event API's US
      endpoint maps to ``/v1/events`` and its EU endpoint to ``/eu/v1/events``.

    Results are cached per distinct event URL (there are one or two in practice).
    """

    __slots__ = ("_base", "_cache", "_fixed", "endpoint")

    def __init__(self, endpoint: str | None) -> None:
        self.endpoint = endpoint
        self._fixed: str | None = None
        self._base: str | None = None
        self._cache: dict[str, str] = {}
        if endpoint is None:
            return
        validate_url(endpoint, argument="endpoint")
        parts = urllib.parse.urlsplit(endpoint)
        if parts.path in ("", "/") and not parts.query:
            self._base = endpoint.rstrip("/")
        else:
            self._fixed = endpoint
            warning = check_event_path(endpoint)
            if warning is not None:
                logger.warning("%s", warning)

    def route(self, event_url: str) -> str:
        """The URL to post an event built for ``event_url`` to."""
        if self._fixed is not None:
            return self._fixed
        if self._base is None:
            return event_url
        cached = self._cache.get(event_url)
        if cached is None:
            cached = self._base + (EU_PATH if is_eu_url(event_url) else US_PATH)
            if len(self._cache) < 64:
                self._cache[event_url] = cached
        return cached
