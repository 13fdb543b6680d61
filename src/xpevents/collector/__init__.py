"""The collector: an events-API-compatible HTTP sink with fault injection and stats.

Run it with ``xpevents collector`` or, from Python::

    from xpevents.collector import Collector, CollectorServer

    with CollectorServer(Collector(), port=0) as server:
        ...  # POST payloads to f"{server.url}/v1/events"

In tests, prefer :func:`xpevents.testing.run_collector` or the ``collector`` pytest
fixture, which run it in a subprocess.
"""

from xpevents.collector.app import ABORT_EXTENSION, DEFAULT_MAX_BODY, Collector
from xpevents.collector.faults import Fault, FaultInjector, FaultSettings
from xpevents.collector.server import CollectorServer, DropCapableProtocol
from xpevents.collector.stats import CollectorStats
from xpevents.collector.store import EventStore

__all__ = [
    "ABORT_EXTENSION",
    "DEFAULT_MAX_BODY",
    "Collector",
    "CollectorServer",
    "CollectorStats",
    "DropCapableProtocol",
    "EventStore",
    "Fault",
    "FaultInjector",
    "FaultSettings",
]
