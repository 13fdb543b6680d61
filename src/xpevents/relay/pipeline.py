"""The relay's forwarding pipeline: the upstream HTTP client and the BatchDispatcher."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

import httpx

from xpevents.dispatch.batch import BatchDispatcher
from xpevents.dispatch.deadline import deadline_transport
from xpevents.errors import SpoolError
from xpevents.relay.metrics import RelayMetrics
from xpevents.relay.routing import RegionTransport
from xpevents.relay.timing import TimedTransport
from xpevents.spool.base import Spool

if TYPE_CHECKING:
    from xpevents.relay.app import RelaySettings

__all__ = ["FORWARD_HINT", "RELAY_HINT"]

RELAY_HINT: Final = "see the relay's /metrics and /readyz"
"""Where the relay's "upstream failing" log line sends an operator (``stats()`` is not
theirs to call)."""
FORWARD_HINT: Final = "`xpevents spool stats URL` shows the backlog"
"""The same for ``xpevents forward``, which serves no HTTP."""


def _upstream_client(
    settings: RelaySettings, metrics: RelayMetrics, transport: httpx.BaseTransport | None
) -> httpx.Client:
    """The client the dispatcher forwards with: each request to its region's configured
    upstream (:mod:`xpevents.relay.routing`), timed by ``metrics``; never reads proxy env."""
    inner = transport or deadline_transport(
        proxy=settings.proxy,
        limits=httpx.Limits(
            max_connections=settings.concurrency + 2,
            max_keepalive_connections=settings.concurrency + 2,
        ),
    )
    upstreams = {"us": settings.upstream, "eu": settings.upstream_eu}
    return httpx.Client(
        transport=RegionTransport(TimedTransport(inner, metrics), upstreams),
        timeout=httpx.Timeout(settings.timeout),
        trust_env=False,
    )


def _forwarder(
    store: Spool, http: httpx.Client, settings: RelaySettings, *, hint: str = RELAY_HINT
) -> BatchDispatcher:
    """A BatchDispatcher reading ``store``: retries forever, dead-letters by age.

    Its circuit breaker's log lines are worded for an operator: the failing line ends
    with ``hint``, and the recovery line is a WARNING (the relay's default log level:
    the end of an episode shows wherever its start did) with the spool's depth.
    """
    dispatcher = BatchDispatcher(
        spool=store,
        http_client=http,
        batch_size=settings.batch_size,
        flush_interval=settings.flush_interval,
        max_batch_bytes=settings.max_batch_bytes,
        max_concurrent_requests=settings.concurrency,
        timeout=settings.timeout,
        retry=settings.retry_policy(),
        gzip=settings.gzip,
        lease=settings.lease,
        atexit_timeout=None,
    )
    # BatchDispatcher has no option for the wording: set it on its circuits (send/circuit.py).
    circuits = dispatcher._core.circuits
    circuits.hint = hint
    circuits.recovered_level = logging.WARNING

    def waiting() -> int | None:
        try:
            return store.stats(now=time.time()).depth
        except SpoolError:
            return None

    circuits.waiting = waiting
    return dispatcher
