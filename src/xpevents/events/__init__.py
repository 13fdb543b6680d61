"""Event model and builder."""

from xpevents.events.model import DEFAULT_HEADERS, EVENTS_URL, EVENTS_URL_EU, LogEvent

__all__ = ["DEFAULT_HEADERS", "EVENTS_URL", "EVENTS_URL_EU", "LogEvent"]
