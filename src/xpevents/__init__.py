"""xpevents: a fast, durable, batching event pipeline for experimentation SDKs.

The public API lives here; import from ``xpevents`` rather than from submodules.
"""

from xpevents._version import __version__
from xpevents.dispatch.default import DefaultEventDispatcher
from xpevents.dispatch.protocol import EventDispatcher, EventLike
from xpevents.dispatch.retry import BACKGROUND_RETRY, SYNC_RETRY, RetryPolicy
from xpevents.dispatch.stats import DispatchOutcome, DispatchStats
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
    "BACKGROUND_RETRY",
    "EVENTS_URL",
    "EVENTS_URL_EU",
    "SYNC_RETRY",
    "ConfigError",
    "DatafileError",
    "DefaultEventDispatcher",
    "DispatchError",
    "DispatchOutcome",
    "DispatchStats",
    "EventDispatcher",
    "EventLike",
    "LogEvent",
    "PayloadError",
    "RetryPolicy",
    "SpoolError",
    "XpeventsError",
    "__version__",
]
