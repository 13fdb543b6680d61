"""The relay's forwarding pipeline: the upstream HTTP client and the BatchDispatcher."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from xpevents.dispatch.batch import BatchDispatcher
from xpevents.dispatch.deadline import deadline_transport
from xpevents.relay.metrics import RelayMetrics, TimedTransport
from xpevents.relay.routing import RegionTransport
from xpevents.spool.base import Spool

if TYPE_CHECKING:
    from xpevents.relay.app import RelaySettings

__all__: list[str] = []


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


def _forwarder(store: Spool, http: httpx.Client, settings: RelaySettings) -> BatchDispatcher:
    """A BatchDispatcher reading ``store``: retries forever, dead-letters by age."""
    return BatchDispatcher(
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
