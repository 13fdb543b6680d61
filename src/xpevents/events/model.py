"""The event object handed to dispatchers.

:class:`LogEvent` has the attribute names of the official optimizely-sdk ``Event`` /
``LogEvent`` (``url``, ``params``, ``http_verb``, ``headers``), so events flow both ways:
our dispatchers accept the official SDK's events and the official SDK's dispatchers
accept ours.
"""

from __future__ import annotations

from typing import Any, Final

EVENTS_URL: Final = "https://logx.optimizely.com/v1/events"
"""The Optimizely event API endpoint (US)."""

EVENTS_URL_EU: Final = "https://eu.logx.optimizely.com/v1/events"
"""The Optimizely event API endpoint for projects whose datafile says ``region: EU``."""

DEFAULT_HEADERS: Final[dict[str, str]] = {"Content-Type": "application/json"}


class LogEvent:
    """One request for the event API: ``params`` is the JSON body (for POST).

    Args:
        url: where the event goes (a dispatcher's ``endpoint`` option overrides it).
        params: the payload; for POST it is serialised to JSON as the body, for GET it
            becomes the query string.
        http_verb: ``"POST"`` (default) or ``"GET"``.
        headers: request headers; default ``{"Content-Type": "application/json"}``.

    A dispatcher never modifies an event it was handed.
    """

    __slots__ = ("headers", "http_verb", "params", "url")

    def __init__(
        self,
        url: str,
        params: Any,
        http_verb: str = "POST",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.params = params
        self.http_verb = http_verb
        self.headers = dict(DEFAULT_HEADERS) if headers is None else headers

    def __repr__(self) -> str:
        return f"LogEvent(url={self.url!r}, http_verb={self.http_verb!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogEvent):
            return NotImplemented
        return (self.url, self.params, self.http_verb, self.headers) == (
            other.url,
            other.params,
            other.http_verb,
            other.headers,
        )

    __hash__ = None  # type: ignore[assignment]
