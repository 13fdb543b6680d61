"""Counters the collector keeps in memory and serves as ``GET /stats``."""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict, deque
from typing import Any, Final

__all__ = ["CollectorStats"]

_RECENT_WARNINGS: Final = 20
_INDEX: Final = re.compile(r"\[\d+\]")

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
        self.revenue: defaultdict[str, int | float] = defaultdict(int)
        self.dropped_connections = 0
        self.invalid_payloads = 0
        self.too_large = 0
        self.rejected: Counter[str] = Counter()
        self.schema_warnings: Counter[str] = Counter()
        self.recent_warnings: deque[dict[str, str]] = deque(maxlen=_RECENT_WARNINGS)
        self.faults: Counter[str] = Counter()
        self.bytes_received = 0

    def warn(self, path: str, detail: str, client: str) -> None:
        """Count a schema error in an accepted payload (``--strict warn``).

        Counted by path with list indices blanked (``$.visitors[].snapshots[]...``),
        so that one SDK bug is one line however many visitors it touched; the last 20
        are kept with their detail and ``client_name/client_version``.
        """
        self.schema_warnings[_INDEX.sub("[]", path)] += 1
        self.recent_warnings.append({"path": path, "error": detail, "client": client})

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
            "schema_warnings": dict(self.schema_warnings),
            "recent_schema_warnings": list(self.recent_warnings),
            "faults": dict(self.faults),
            "bytes_received": self.bytes_received,
            "uptime_s": round(time.time() - self.started_at, 3),
        }
