"""Event API payloads for dispatcher tests (one place, shared by the batch and aio tests)."""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

from xpevents import LogEvent, RetryPolicy

FAST_RETRY = RetryPolicy(
    max_attempts=None, backoff_base=0.01, backoff_max=0.2, max_retry_after=5.0, max_retry_age=60.0
)
"""Background retries fast enough for tests."""

_counter = itertools.count()


def visitor(i: int | None = None, *, pad: int = 0) -> dict[str, Any]:
    """One impression visitor with a fresh uuid; ``pad`` bytes make it larger."""
    n = next(_counter) if i is None else i
    attributes: list[dict[str, Any]] = []
    if pad:
        attributes.append({"entity_id": "a1", "key": "pad", "type": "custom", "value": "x" * pad})
    return {
        "visitor_id": f"user-{n}",
        "attributes": attributes,
        "snapshots": [
            {
                "decisions": [{"campaign_id": "11", "experiment_id": "22", "variation_id": "33"}],
                "events": [
                    {
                        "entity_id": "11",
                        "uuid": str(uuid.uuid4()),
                        "timestamp": int(time.time() * 1000),
                        "key": "campaign_activated",
                    }
                ],
            }
        ],
    }


def payload(visitors: list[dict[str, Any]], **head: Any) -> dict[str, Any]:
    """An event API payload around ``visitors``; ``head`` overrides envelope fields."""
    params: dict[str, Any] = {
        "account_id": "1001",
        "project_id": "2002",
        "revision": "7",
        "client_name": "python-sdk",
        "client_version": "5.7.0",
        "anonymize_ip": False,
        "enrich_decisions": True,
    }
    params.update(head)
    params["visitors"] = visitors
    return params


def event(url: str = "https://logx.optimizely.com/v1/events", n: int = 1, **head: Any) -> LogEvent:
    """A LogEvent carrying ``n`` fresh visitors (``pad=`` enlarges each)."""
    pad = head.pop("pad", 0)
    return LogEvent(url, payload([visitor(pad=pad) for _ in range(n)], **head))
