"""50,000 events through a faulty collector: nothing lost (make test-long)."""

from __future__ import annotations

import time
import uuid

import pytest

from xpevents import LogEvent, RetryPolicy
from xpevents.dispatch.batch import BatchDispatcher
from xpevents.testing import run_collector

pytestmark = pytest.mark.long


def _event(i: int) -> LogEvent:
    return LogEvent(
        "https://logx.optimizely.com/v1/events",
        {
            "account_id": "1",
            "project_id": "2",
            "revision": "3",
            "client_name": "python-sdk",
            "client_version": "5.7.0",
            "anonymize_ip": False,
            "enrich_decisions": True,
            "visitors": [
                {
                    "visitor_id": f"user-{i}",
                    "attributes": [],
                    "snapshots": [
                        {
                            "decisions": [
                                {"campaign_id": "1", "experiment_id": "2", "variation_id": "3"}
                            ],
                            "events": [
                                {
                                    "entity_id": "1",
                                    "uuid": str(uuid.uuid4()),
                                    "timestamp": int(time.time() * 1000),
                                    "key": "campaign_activated",
                                }
                            ],
                        }
                    ],
                }
            ],
        },
    )


def test_no_loss_50k_under_faults() -> None:
    total = 50_000
    policy = RetryPolicy(
        max_attempts=None, backoff_base=0.01, backoff_max=0.5, max_retry_after=5, max_retry_age=300
    )
    with run_collector(fail_rate=0.3, rate_429=0.1, retry_after=1, drop_rate=0.05, seed=11) as c:
        bd = BatchDispatcher(
            endpoint=c.base_url,
            retry=policy,
            max_batch_bytes=128 * 1024,
            max_queue_events=total,
            timeout=5,
        )
        for i in range(total):
            bd.dispatch_event(_event(i))
        outcome = bd.flush(240)
        stats = bd.stats()
        bd.close(5)
        got = c.stats()
    assert outcome.pending == 0, outcome
    assert got["unique_events"] == total
    assert stats.delivered == total and stats.dropped == {} and stats.failed == {}
