"""What the dashboard remembers about requests: outcomes per second and recent requests.

:class:`RequestObserver` is a pure ASGI middleware around the collector's app. After
each events request (``POST /v1/events``, ``POST /eu/v1/events``) it reads the
collector's counters and adds what changed since the previous request to the current
second, by outcome:

* ``accepted``: new (unique) events stored;
* ``duplicate``: events already stored;
* ``rejected``: requests refused (invalid payload, too large);
* ``fault``: requests answered with an injected fault (or dropped).

Rejected and faulted requests are counted per request (their events are not read). The
last :data:`RECENT_REQUESTS` requests that were not plain acceptances (rejected, faulted,
or carrying duplicates) are kept with their status and error text for the live table.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from xpevents.collector.stats import CollectorStats

__all__ = ["OUTCOMES", "RECENT_REQUESTS", "RequestObserver", "Timeline"]

OUTCOMES: Final = ("accepted", "duplicate", "rejected", "fault")
RECENT_REQUESTS: Final = 200
SECONDS: Final = 120
"""Seconds of history the chart shows."""

_EVENT_PATHS: Final = frozenset({"/v1/events", "/eu/v1/events"})
_ERROR_TEXT: Final = 300

ASGIApp = Callable[..., Any]


def _counters(stats: CollectorStats) -> tuple[int, int, int, int]:
    return (
        stats.unique_events,
        stats.duplicates,
        stats.invalid_payloads + stats.too_large,
        sum(stats.faults.values()),
    )


class Timeline:
    """Per-second outcome counts (last :data:`SECONDS`) and recent unusual requests."""

    def __init__(self, stats: CollectorStats) -> None:
        self._stats = stats
        self._last = _counters(stats)
        self._dropped = stats.dropped_connections
        self._seconds: deque[list[int]] = deque(maxlen=SECONDS)  # [second, *outcomes]
        self.requests: deque[dict[str, Any]] = deque(maxlen=RECENT_REQUESTS)
        self._seq = 0

    def reset(self) -> None:
        """Forget everything (the collector's ``POST /reset``)."""
        self._last = _counters(self._stats)
        self._dropped = self._stats.dropped_connections
        self._seconds.clear()
        self.requests.clear()

    def record(self, path: str, status: int | None, error: str) -> None:
        """Account for one finished events request."""
        dropped = self._stats.dropped_connections > self._dropped
        self._dropped = self._stats.dropped_connections
        if dropped:
            status = None  # the response the app returned was never sent
        now = _counters(self._stats)
        if any(n < last for n, last in zip(now, self._last, strict=True)):
            self._last = (0, 0, 0, 0)  # the stats were reset in between
        delta = [n - last for n, last in zip(now, self._last, strict=True)]
        self._last = now
        second = int(time.time())
        if not self._seconds or self._seconds[-1][0] != second:
            self._seconds.append([second, 0, 0, 0, 0])
        bucket = self._seconds[-1]
        for i, n in enumerate(delta):
            bucket[i + 1] += max(0, n)
        outcome = self._outcome(status, delta)
        if outcome != "accepted":
            self._seq += 1
            self.requests.append(
                {
                    "seq": self._seq,
                    "received_at": time.time(),
                    "path": path,
                    "status": status,
                    "outcome": outcome,
                    "stored": max(0, delta[0]),
                    "duplicates": max(0, delta[1]),
                    "error": error[:_ERROR_TEXT],
                }
            )

    @staticmethod
    def _outcome(status: int | None, delta: list[int]) -> str:
        if delta[3] > 0 or status is None:
            return "fault"
        if status >= 400:
            return "rejected"
        return "duplicate" if delta[1] > 0 else "accepted"

    def series(self, now: float | None = None) -> list[dict[str, int]]:
        """One point per second of the last :data:`SECONDS`, zeros included, oldest first."""
        end = int(time.time() if now is None else now)
        by_second = {b[0]: b for b in self._seconds}
        points = []
        for second in range(end - SECONDS + 1, end + 1):
            bucket = by_second.get(second, [second, 0, 0, 0, 0])
            points.append({"t": second, **dict(zip(OUTCOMES, bucket[1:], strict=True))})
        return points


class RequestObserver:
    """ASGI middleware feeding a :class:`Timeline` from the events endpoints' answers."""

    def __init__(self, app: ASGIApp, timeline: Timeline, on_reset: Callable[[], None]) -> None:
        self.app = app
        self.timeline = timeline
        self.on_reset = on_reset

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Pass the request on; after an events request, record its outcome."""
        if scope.get("type") != "http" or scope.get("path") not in _EVENT_PATHS:
            await self.app(scope, receive, send)
            if scope.get("path") == "/reset" and scope.get("method") == "POST":
                self.timeline.reset()
                self.on_reset()
            return
        seen: dict[str, Any] = {"status": None, "body": b""}

        async def watch(message: Any) -> None:
            if message.get("type") == "http.response.start":
                seen["status"] = message.get("status")
            elif message.get("type") == "http.response.body" and len(seen["body"]) < 1000:
                seen["body"] += message.get("body", b"")[:1000]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            status = seen["status"]
            error = "" if status == 204 else seen["body"].decode("utf-8", "replace")
            self.timeline.record(scope["path"], status, error)
