"""xpevents: a fast, durable, batching event pipeline for experimentation SDKs.

The public API lives here; import from ``xpevents`` rather than from submodules.
"""

from xpevents._version import __version__
from xpevents.dispatch.protocol import EventDispatcher, EventLike
from xpevents.errors import (
    ConfigError,
    DatafileError,
    DispatchError,
    PayloadError,
    SpoolError,
    XpeventsError,
)
from xpevents.events.model import EVENTS_URL, EVENTS_URL_EU, LogEvent

__all__ = [
    "EVENTS_URL",
    "EVENTS_URL_EU",
    "ConfigError",
    "DatafileError",
    "DispatchError",
    "EventDispatcher",
    "EventLike",
    "LogEvent",
    "PayloadError",
    "SpoolError",
    "XpeventsError",
    "__version__",
]
