"""The upstream requests' latency and outcome, recorded as the forwarder sends them."""

from __future__ import annotations

import time

import httpx

from xpevents.relay.metrics import RelayMetrics

__all__ = ["TimedTransport"]


class TimedTransport(httpx.BaseTransport):
    """An httpx transport that times each upstream request and records its outcome."""

    def __init__(self, inner: httpx.BaseTransport, metrics: RelayMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        started = time.perf_counter()
        try:
            response = self._inner.handle_request(request)
        except Exception as exc:
            self._metrics.observe_upstream(
                url, time.perf_counter() - started, status=None, error=repr(exc)
            )
            raise
        self._metrics.observe_upstream(
            url,
            time.perf_counter() - started,
            status=response.status_code,
            error=None if response.status_code < 400 else f"HTTP {response.status_code}",
        )
        return response

    def close(self) -> None:
        self._inner.close()
