"""xpevents: a fast, durable, batching event pipeline for experimentation SDKs.

The public API lives here; import from ``xpevents`` rather than from submodules.
"""

from xpevents._internal import httpx_cli  # noqa: F401 - first: defers httpx's CLI import
from xpevents._version import __version__
from xpevents.client import Client
from xpevents.client.notifications import NotificationCenter, NotificationType
from xpevents.client.user_context import (
    OptimizelyDecisionContext,
    OptimizelyForcedDecision,
    OptimizelyUserContext,
)
from xpevents.decide import (
    Decision,
    InvalidInputError,
    OptimizelyDecideOption,
    OptimizelyDecision,
    UnknownKeyError,
)
from xpevents.decide.datafile import ProjectConfig, load_config
from xpevents.dispatch.aio import AsyncDispatcher
from xpevents.dispatch.batch import BatchDispatcher
from xpevents.dispatch.default import DefaultEventDispatcher
from xpevents.dispatch.protocol import EventDispatcher, EventLike
from xpevents.errors import (
    ConfigError,
    DatafileError,
    DispatchError,
    PayloadError,
    SpoolError,
    XpeventsError,
)
from xpevents.events.builder import EventBuilder
from xpevents.events.model import EVENTS_URL, EVENTS_URL_EU, LogEvent
from xpevents.send.retry import BACKGROUND_RETRY, SYNC_RETRY, RetryPolicy
from xpevents.stats import DispatchOutcome, DispatchStats

__all__ = [
    "BACKGROUND_RETRY",
    "EVENTS_URL",
    "EVENTS_URL_EU",
    "SYNC_RETRY",
    "AsyncDispatcher",
    "BatchDispatcher",
    "Client",
    "ConfigError",
    "DatafileError",
    "Decision",
    "DefaultEventDispatcher",
    "DispatchError",
    "DispatchOutcome",
    "DispatchStats",
    "EventBuilder",
    "EventDispatcher",
    "EventLike",
    "InvalidInputError",
    "LogEvent",
    "NotificationCenter",
    "NotificationType",
    "OptimizelyDecideOption",
    "OptimizelyDecision",
    "OptimizelyDecisionContext",
    "OptimizelyForcedDecision",
    "OptimizelyUserContext",
    "PayloadError",
    "ProjectConfig",
    "RetryPolicy",
    "SpoolError",
    "UnknownKeyError",
    "XpeventsError",
    "__version__",
    "load_config",
]
