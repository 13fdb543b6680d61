"""BatchDispatcher's atexit flush says what it flushes (as sentry-sdk does)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from xpevents.testing import CollectorHandle

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from xpevents import BatchDispatcher, Client
    from xpevents.example import example_datafile
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    dispatcher = BatchDispatcher(endpoint=sys.argv[1], flush_interval=60.0, batch_size=10_000)
    client = Client(example_datafile(), event_dispatcher=dispatcher)
    for i in range(5):
        client.track("purchase", f"u{i}")
    # no close(): the atexit hook flushes
    """
)


def test_the_atexit_flush_says_how_many_and_for_how_long(collector: CollectorHandle) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, collector.events_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "BatchDispatcher: flushing 5 queued visitor(s) at exit (waiting up to 5 s" in (
        result.stderr
    )
    assert collector.wait_for(unique_events=5, timeout=10)["unique_events"] == 5


def test_outcomes_and_stats_print_plain_dicts_and_the_lifetime_total(
    collector: CollectorHandle,
) -> None:
    from xpevents import BatchDispatcher, Client
    from xpevents.example import example_datafile

    dispatcher = BatchDispatcher(endpoint=collector.events_url)
    with Client(example_datafile(), event_dispatcher=dispatcher) as client:
        for i in range(6):
            client.track("purchase", f"u{i}")
    assert dispatcher.flush(10).delivered_total == 6
    outcome = dispatcher.close(5)
    assert outcome.delivered == 0 and outcome.delivered_total == 6  # sent before close()
    assert "mappingproxy" not in repr(outcome) and "failed={}" in repr(outcome)
    assert "mappingproxy" not in repr(dispatcher.stats())
