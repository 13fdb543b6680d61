"""Counters the collector keeps in memory and serves as ``GET /stats``."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

__all__ = ["CollectorStats"]

NULL_VARIATION = "null"
"""Key used in ``impressions`` for a decision whose ``variation_id`` was ``null``."""


class CollectorStats:
    """What the collector has seen since start (or the last reset).

    Only the event loop thread mutates it; :meth:`snapshot` returns a JSON-ready copy
    whose keys are documented in ``docs/collector.md``.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Zero every counter."""
        self.started_at = time.time()
        self.requests = 0
        self.requests_by_status: Counter[int] = Counter()
        self.requests_by_region: Counter[str] = Counter({"us": 0, "eu": 0})
        self.payloads = 0
        self.visitors = 0
        self.events = 0
        self.unique_events = 0
        self.duplicates = 0
        self.impressions: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.conversions: Counter[str] = Counter()
        self.revenue: Counter[str] = Counter()
        self.dropped_connections = 0
        self.invalid_payloads = 0
        self.too_large = 0
        self.rejected: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.bytes_received = 0

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain JSON types (status codes as string keys)."""
        return {
            "requests": self.requests,
            "requests_by_status": {str(k): v for k, v in sorted(self.requests_by_status.items())},
            "requests_by_region": dict(self.requests_by_region),
            "payloads": self.payloads,
            "visitors": self.visitors,
            "events": self.events,
            "unique_events": self.unique_events,
            "duplicates": self.duplicates,
            "impressions": {exp: dict(by_var) for exp, by_var in self.impressions.items()},
            "conversions": dict(self.conversions),
            "revenue": dict(self.revenue),
            "dropped_connections": self.dropped_connections,
            "invalid_payloads": self.invalid_payloads,
            "too_large": self.too_large,
            "rejected_by_reason": dict(self.rejected),
            "faults": dict(self.faults),
            "bytes_received": self.bytes_received,
            "uptime_s": round(time.time() - self.started_at, 3),
        }
