"""Where a spooled visitor is forwarded: the upstream configured *now*, per region.

A spool outlives its configuration: records written before a restart (or by another
writer, such as PHP's ``RedisSpoolEventDispatcher``) carry the URL their event was
built for. The relay never follows that URL. :class:`RegionTransport` sits in front of
the forwarding HTTP transport and sends each request to the current ``--upstream`` or
``--upstream-eu``, chosen by the region of the URL it was addressed to: after a typo in
``--upstream`` is fixed and the relay restarted, the backlog goes to the fixed URL.

The relay writes the Event API's canonical URLs into its envelopes
(:data:`CANONICAL`), so that the batching key does not depend on the configuration
either.
"""

from __future__ import annotations

from typing import Final

import httpx

from xpevents.send.endpoint import is_eu_url

__all__ = ["CANONICAL", "RegionTransport", "region_of"]

CANONICAL: Final = {
    "us": "https://logx.optimizely.com/v1/events",
    "eu": "https://eu.logx.optimizely.com/v1/events",
}
"""The URL written into a spooled envelope for each region."""


def region_of(url: str, eu_upstream: str | None = None) -> str:
    """``"eu"`` for the Event API's EU endpoint, a ``/eu/`` path or ``eu_upstream``."""
    return "eu" if url == eu_upstream or is_eu_url(url) else "us"


class RegionTransport(httpx.BaseTransport):
    """Rewrites each request's URL to the configured upstream of its region.

    Args:
        inner: the transport that sends.
        upstreams: region (``"us"``, ``"eu"``) -> URL.
    """

    def __init__(self, inner: httpx.BaseTransport, upstreams: dict[str, str]) -> None:
        self._inner = inner
        self._upstreams = {region: httpx.URL(url) for region, url in upstreams.items()}
        self._eu = upstreams.get("eu")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = self._upstreams[region_of(str(request.url), self._eu)]
        if request.url != target:
            request.url = target
            request.headers["Host"] = target.netloc.decode("ascii")
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()
