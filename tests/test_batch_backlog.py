"""A durable spool's backlog is delivered by the next dispatcher, wherever it points."""

from __future__ import annotations

import time
from pathlib import Path

from xpevents import BatchDispatcher, LogEvent, RetryPolicy
from xpevents.testing import run_collector

from servers import closed_port_url

FAST = RetryPolicy(max_attempts=None, backoff_base=0.01, backoff_max=0.05, max_retry_age=600)


def _event(i: int) -> LogEvent:
    return LogEvent(
        "https://logx.optimizely.com/v1/events",
        {
            "account_id": "1",
            "project_id": "2",
            "revision": "3",
            "client_name": "t",
            "client_version": "0",
            "anonymize_ip": False,
            "enrich_decisions": True,
            "visitors": [
                {
                    "visitor_id": f"u{i}",
                    "attributes": [],
                    "snapshots": [
                        {
                            "events": [
                                {"entity_id": "1", "uuid": f"id-{i}", "key": "k", "timestamp": 1}
                            ]
                        }
                    ],
                }
            ],
        },
    )


def test_backlog_goes_to_the_new_endpoint_without_new_traffic(tmp_path: Path) -> None:
    spool = f"sqlite:///{tmp_path}/spool.db"
    wrong = closed_port_url().rsplit("/v1/events", 1)[0]
    first = BatchDispatcher(endpoint=wrong, spool=spool, retry=FAST, atexit_timeout=None)
    for i in range(50):
        first.dispatch_event(_event(i))
    outcome = first.close(timeout=0.5)  # the endpoint refuses: everything stays spooled
    assert outcome.pending == 50 or first.stats().spool_depth == 50
    with run_collector() as collector:
        second = BatchDispatcher(
            endpoint=collector.base_url,
            spool=spool,
            retry=FAST,
            flush_interval=0.05,
            atexit_timeout=None,
        )
        try:
            # No dispatch_event, no flush: the senders start on the backlog by themselves,
            # and the new endpoint applies to events spooled under the old one.
            stats = collector.wait_for(unique_events=50, timeout=30)
            assert stats["unique_events"] == 50
            deadline = time.monotonic() + 10
            while second.stats().spool_depth and time.monotonic() < deadline:
                time.sleep(0.05)
            assert second.stats().spool_depth == 0
        finally:
            second.close(timeout=5)
