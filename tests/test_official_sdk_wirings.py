"""The official ``optimizely-sdk`` 5.7.0 wired to xpevents, one test group per wiring.

The wirings documented in docs/official-sdk.md:

1. ``Optimizely(datafile, event_dispatcher=BatchDispatcher(...))``: the SDK builds its
   own ``BatchEventProcessor`` (queue of 1,000, batch_size 1, its own thread) in front
   of our dispatcher;
2. ``Optimizely(..., event_processor=ForwardingEventProcessor(BatchDispatcher(...)))``:
   each event is handed to our queue in the caller's thread; ours is the only queue;
3. either of them with a durable spool (``spool="sqlite:///..."``), across SIGKILL;
4. pointed at an ``xpevents relay`` (``endpoint=relay.base_url``);
5. gunicorn ``--preload`` (tests/test_official_sdk_fork.py).

Every dispatcher here sends to a local collector (``endpoint=``); the suite's dead
proxy catches anything that would escape. Existing coverage not repeated here:
tests/test_batch_sdk.py (10k activates, forwarding; 200 activate+track, default) and
tests/test_official_sdk_default.py (DefaultEventDispatcher under the SDK).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xpevents import DefaultEventDispatcher
from xpevents.dispatch.batch import BatchDispatcher
from xpevents.relay.testing import run_relay
from xpevents.send.retry import RetryPolicy
from xpevents.testing import CollectorHandle, run_collector

EXPERIMENT = "checkout_button_color"  # 100% traffic, no audience: every user buckets
FAST_RETRY = RetryPolicy(
    max_attempts=None, backoff_base=0.05, backoff_max=0.5, max_retry_after=5.0, max_retry_age=600.0
)


@pytest.fixture(autouse=True)
def _quiet_sdk() -> Iterator[None]:
    logging.getLogger("optimizely").setLevel(logging.CRITICAL)
    yield


def default_wiring(datafile: str, dispatcher: Any, **processor_options: Any) -> Any:
    """Wiring 1: the SDK's own BatchEventProcessor in front of ``dispatcher``."""
    from optimizely import optimizely

    return optimizely.Optimizely(
        datafile, event_dispatcher=dispatcher, event_processor_options=processor_options or None
    )


def forwarding_wiring(datafile: str, dispatcher: Any) -> Any:
    """Wiring 2: ForwardingEventProcessor: the caller hands each event to ``dispatcher``."""
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor
    from optimizely.notification_center import NotificationCenter

    center = NotificationCenter()  # shared, so LOG_EVENT listeners on the SDK fire
    return optimizely.Optimizely(
        datafile,
        event_dispatcher=dispatcher,
        event_processor=ForwardingEventProcessor(dispatcher, notification_center=center),
        notification_center=center,
    )


def all_uuids(collector: CollectorHandle) -> list[str]:
    out: list[str] = []
    offset = 0
    while True:
        page = collector.events(limit=1000, offset=offset)
        out.extend(str(e["uuid"]) for e in page)
        if len(page) < 1000:
            return out
        offset += len(page)


def event_threads() -> list[threading.Thread]:
    """The official BatchEventProcessor's consumer threads ("EventThread")."""
    return [t for t in threading.enumerate() if t.name == "EventThread" and t.is_alive()]


class Gate:
    """A dispatcher that holds the first event until released, then forwards all."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        self.handed: list[str] = []

    def dispatch_event(self, event: Any) -> None:
        self.entered.set()
        self.release.wait(30)
        self.handed.extend(v["visitor_id"] for v in event.params["visitors"])
        self.inner.dispatch_event(event)


# -- 1. the SDK's default wiring ---------------------------------------------------------


def test_default_wiring_is_a_1000_slot_queue_batch_size_1_and_its_own_thread(
    collector: CollectorHandle, datafile_text: str
) -> None:
    from optimizely.event.event_processor import BatchEventProcessor

    before = len(event_threads())
    dispatcher = BatchDispatcher(endpoint=collector.base_url, flush_interval=0.05)
    sdk = default_wiring(datafile_text, dispatcher)
    try:
        processor = sdk.event_processor
        assert isinstance(processor, BatchEventProcessor)
        # Optimizely() passes batch_size=1 and flush_interval=30 (BatchEventProcessor's own
        # defaults, 10 and 30, apply only when you build one yourself); start_on_init=True.
        assert processor.batch_size == 1
        assert processor.flush_interval.total_seconds() == 30
        assert processor.event_queue.maxsize == 1000
        assert processor.event_dispatcher is dispatcher
        assert processor.is_running and len(event_threads()) == before + 1

        for i in range(300):
            sdk.activate(EXPERIMENT, f"user-{i}")
            sdk.track("purchase", f"user-{i}", event_tags={"revenue": 1299})
            sdk.create_user_context(f"user-{i}").decide("new_checkout")
        sdk.close()  # stops its thread after handing over its queue
        assert not processor.is_running
        assert dispatcher.flush(20).pending == 0
        stats = dispatcher.stats()
        # batch_size 1: one dispatch_event call per event, each carrying one visitor;
        # our batching merges them: far fewer requests than events
        assert stats.calls == stats.visitors == stats.delivered
        delivered = collector.wait_for(unique_events=stats.delivered, timeout=20)
        assert delivered["unique_events"] == stats.delivered >= 600
        assert delivered["duplicates"] == 0
        assert delivered["requests"] < stats.delivered / 5
    finally:
        sdk.close()
        dispatcher.close(5)


def test_default_wiring_processor_options_make_bigger_sdk_batches(
    collector: CollectorHandle, datafile_text: str
) -> None:
    """``event_processor_options`` sizes the SDK's batches; ours keeps them whole."""
    dispatcher = BatchDispatcher(endpoint=collector.base_url, flush_interval=0.05)
    sdk = default_wiring(datafile_text, dispatcher, batch_size=50, flush_interval=0.2)
    try:
        for i in range(500):
            sdk.activate(EXPERIMENT, f"user-{i}")
        sdk.close()
        assert dispatcher.flush(20).pending == 0
        stats = dispatcher.stats()
        assert stats.visitors == stats.delivered == 500
        assert stats.calls <= 500 // 50 + 5  # payloads of up to 50 visitors
        assert collector.wait_for(unique_events=500, timeout=20)["duplicates"] == 0
    finally:
        dispatcher.close(5)


def test_default_wiring_drops_the_newest_events_silently_when_its_queue_is_full(
    collector: CollectorHandle, datafile_text: str
) -> None:
    """The official processor's queue.put_nowait: 1,000 slots, the rest only logged.

    Its consumer thread is held inside dispatch_event (as a slow synchronous dispatcher
    would hold it); activate() keeps returning a variation for every user while the
    newest events are dropped. Our dispatcher behind it never sees them, so its stats
    show no drop: the loss is upstream of xpevents.
    """
    dispatcher = BatchDispatcher(endpoint=collector.base_url, flush_interval=0.05)
    gate = Gate(dispatcher)
    sdk = default_wiring(datafile_text, gate)
    try:
        assert sdk.activate(EXPERIMENT, "user-0") is not None
        assert gate.entered.wait(10)  # the thread holds user-0; its queue is empty
        shown = sum(sdk.activate(EXPERIMENT, f"user-{i}") is not None for i in range(1, 1501))
        assert shown == 1500  # the caller is never told
        assert sdk.event_processor.event_queue.qsize() == 1000
        gate.release.set()
        sdk.close()
        assert dispatcher.flush(20).pending == 0
        assert gate.handed == [f"user-{i}" for i in range(1001)]  # 1,001..1,500 lost
        assert dispatcher.stats().dropped_total == 0
        assert collector.wait_for(unique_events=1001, timeout=20)["unique_events"] == 1001
    finally:
        gate.release.set()
        dispatcher.close(5)


# -- 2. ForwardingEventProcessor: ours is the only queue ---------------------------------


def test_forwarding_wiring_has_no_sdk_thread_and_keeps_the_same_burst(
    collector: CollectorHandle, datafile_text: str
) -> None:
    """The burst the default wiring cut at 1,001 (held sender) is kept whole here."""
    before = len(event_threads())
    from optimizely.helpers.enums import NotificationTypes

    dispatcher = BatchDispatcher(endpoint=collector.base_url, flush_interval=0.05)
    logged: list[Any] = []
    sdk = forwarding_wiring(datafile_text, dispatcher)
    sdk.notification_center.add_notification_listener(NotificationTypes.LOG_EVENT, logged.append)
    try:
        assert len(event_threads()) == before  # no second thread, no second queue
        # our senders held by a collector that answers slowly would not hold the caller
        collector.control(latency_ms=300)
        started = time.perf_counter()
        shown = sum(sdk.activate(EXPERIMENT, f"user-{i}") is not None for i in range(1501))
        elapsed = time.perf_counter() - started
        assert shown == 1501
        assert elapsed < 10  # no request in the caller's path (300 ms each would be 450 s)
        assert len(logged) == 1501  # LOG_EVENT fires through the shared notification center
        assert dispatcher.stats().calls == 1501
        collector.control(latency_ms=0)
        assert dispatcher.flush(20).pending == 0
        stats = collector.wait_for(unique_events=1501, timeout=20)
        assert stats["unique_events"] == 1501 and stats["duplicates"] == 0
    finally:
        sdk.close()
        dispatcher.close(5)


def test_forwarding_wiring_overflow_is_ours_counted_and_reported(
    collector: CollectorHandle, datafile_text: str
) -> None:
    """When our queue is full, the newest are refused too, but counted and handed to
    ``on_drop`` with the event: nothing is lost silently."""
    refused: list[str] = []
    dispatcher = BatchDispatcher(
        endpoint=collector.base_url,
        max_queue_events=200,
        flush_interval=60,
        batch_size=10_000,
        on_drop=lambda event, reason: refused.append(
            f"{reason}:{event.params['visitors'][0]['visitor_id']}"
        ),
    )
    sdk = forwarding_wiring(datafile_text, dispatcher)
    try:
        for i in range(300):
            sdk.activate(EXPERIMENT, f"user-{i}")
        stats = dispatcher.stats()
        assert stats.dropped == {"queue_full": 100}
        assert refused == [f"queue_full:user-{i}" for i in range(200, 300)]
        assert dispatcher.flush(20).pending == 0
        assert collector.wait_for(unique_events=200, timeout=20)["unique_events"] == 200
    finally:
        sdk.close()
        dispatcher.close(5)


def test_close_order_sdk_first_then_dispatcher(
    collector: CollectorHandle, datafile_text: str
) -> None:
    """sdk.close() hands the SDK's pending batch to our dispatcher; closing ours first
    turns that hand-over into ``dropped["closed"]``."""
    right = BatchDispatcher(endpoint=collector.base_url, flush_interval=60)
    sdk = default_wiring(datafile_text, right, batch_size=100, flush_interval=30)
    for i in range(50):
        sdk.activate(EXPERIMENT, f"right-{i}")
    assert right.stats().calls == 0  # all 50 wait in the SDK's current batch
    sdk.close()
    outcome = right.close(10)
    assert outcome.delivered == 50 and outcome.pending == 0

    wrong = BatchDispatcher(endpoint=collector.base_url, flush_interval=60)
    sdk = default_wiring(datafile_text, wrong, batch_size=100, flush_interval=30)
    for i in range(50):
        sdk.activate(EXPERIMENT, f"wrong-{i}")
    wrong.close(10)
    sdk.close()
    assert wrong.stats().dropped == {"closed": 50}
    assert collector.wait_for(unique_events=50, timeout=10)["unique_events"] == 50
    time.sleep(0.3)
    assert collector.stats()["unique_events"] == 50


# -- 3. a durable spool -----------------------------------------------------------------


def _spool_backlog_then_restart(
    datafile: str, spool: str, first_endpoint: str, second_endpoint: str, n: int
) -> BatchDispatcher:
    """Activate+track ``n`` users into a spool whose endpoint fails, close, reopen."""
    first = BatchDispatcher(
        endpoint=first_endpoint,
        spool=spool,
        retry=FAST_RETRY,
        flush_interval=0.05,
        atexit_timeout=None,
        # a visitor whose attempt is cut off by close() stays leased until the lease
        # ends; a short lease lets the next dispatcher claim it within the test's wait
        lease=1.0,
    )
    assert first.stats().durable
    sdk = forwarding_wiring(datafile, first)
    for i in range(n):
        sdk.activate(EXPERIMENT, f"user-{i}")
        sdk.track("purchase", f"user-{i}")
    sdk.close()
    outcome = first.close(0.5)
    assert outcome.delivered == 0 and outcome.pending == 2 * n  # kept in the spool
    second = BatchDispatcher(
        endpoint=second_endpoint, spool=spool, retry=FAST_RETRY, flush_interval=0.05
    )
    second.flush(0.01)  # start the senders: the backlog is in the spool
    return second


def test_durable_spool_keeps_sdk_events_while_the_endpoint_fails(
    collector: CollectorHandle, datafile_text: str, tmp_path: Path
) -> None:
    collector.control(fail_rate=1.0)  # every request answered 500/503
    spool = f"sqlite:///{tmp_path}/spool.db"
    dispatcher = None
    try:
        dispatcher = _spool_backlog_then_restart(
            datafile_text, spool, collector.base_url, collector.base_url, 1000
        )
        collector.control(fail_rate=0.0)
        stats = collector.wait_for(unique_events=2000, timeout=30)
        assert stats["unique_events"] == 2000
        assert dispatcher.flush(10).pending == 0
        assert dispatcher.stats().spool_depth == 0
    finally:
        if dispatcher is not None:
            dispatcher.close(5)


def test_restart_with_a_new_endpoint_sends_the_spooled_backlog_there(
    collector: CollectorHandle, datafile_text: str, tmp_path: Path
) -> None:
    spool = f"sqlite:///{tmp_path}/spool.db"
    dead = "http://127.0.0.1:9"  # discard port: connection refused (a wrong endpoint)
    dispatcher = _spool_backlog_then_restart(datafile_text, spool, dead, collector.base_url, 100)
    try:
        assert collector.wait_for(unique_events=200, timeout=20)["unique_events"] == 200
    finally:
        dispatcher.close(0.5)


SIGKILL_CHILD = textwrap.dedent(
    """
    import logging, sys, time
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor
    from xpevents.dispatch.batch import BatchDispatcher
    from xpevents.send.retry import RetryPolicy

    logging.getLogger("optimizely").setLevel(logging.CRITICAL)
    datafile, spool, endpoint, n, wiring = sys.argv[1:6]
    bd = BatchDispatcher(
        endpoint=endpoint, spool=spool, lease=2.0, flush_interval=0.05, batch_size=100,
        retry=RetryPolicy(max_attempts=None, backoff_base=0.05, backoff_max=0.5,
                          max_retry_after=5.0, max_retry_age=600.0),
        atexit_timeout=None,
    )
    out = sys.stdout

    class Reporting:
        # prints each event's uuids once our dispatch_event returned (= in the spool)
        def dispatch_event(self, event):
            bd.dispatch_event(event)
            for v in event.params["visitors"]:
                for s in v["snapshots"]:
                    for e in s["events"]:
                        out.write("R " + e["uuid"] + "\\n")
            out.flush()

    if wiring == "forwarding":
        sdk = optimizely.Optimizely(open(datafile).read(), event_dispatcher=bd,
                                    event_processor=ForwardingEventProcessor(Reporting()))
    else:  # the SDK's BatchEventProcessor, batched as its class defaults (10, 30 s)
        sdk = optimizely.Optimizely(open(datafile).read(), event_dispatcher=Reporting(),
                                    event_processor_options={"batch_size": 10})
    for i in range(int(n)):
        sdk.activate("checkout_button_color", f"user-{i}")
        out.write("A\\n")  # activate() returned
        out.flush()
        if i % 50 == 0:
            time.sleep(0.002)
    out.write("DONE\\n")
    out.flush()
    time.sleep(600)
    """
)


def run_sdk_child_and_kill(
    tmp_path: Path,
    datafile: Path,
    spool: str,
    endpoint: str,
    *,
    n: int,
    wiring: str,
    kill_after: int,
) -> tuple[int, list[str]]:
    """Run the SDK child; SIGKILL it once ``kill_after`` activates returned.

    Returns (activates returned, uuids whose dispatch_event into the spool returned).
    """
    script = tmp_path / "sdk_child.py"
    script.write_text(SIGKILL_CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), str(datafile), spool, endpoint, str(n), wiring],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    activated = 0
    spooled: list[str] = []
    killed = False
    for line in child.stdout:
        if line.startswith("A"):
            activated += 1
        elif line.startswith("R "):
            spooled.append(line[2:].strip())
        if activated >= kill_after and not killed:
            os.kill(child.pid, signal.SIGKILL)
            killed = True
    child.wait(10)
    stderr = child.stderr.read() if child.stderr else ""
    if child.stderr is not None:
        child.stderr.close()
    assert killed and child.returncode == -signal.SIGKILL, stderr
    return activated, spooled


def recover(spool: str, collector: CollectorHandle, expected: set[str]) -> set[str]:
    """A restarted process opens the spool and delivers; returns what is still missing."""
    with BatchDispatcher(
        endpoint=collector.base_url,
        spool=spool,
        lease=2.0,
        flush_interval=0.05,
        retry=FAST_RETRY,
        atexit_timeout=None,
    ) as recovery:
        recovery.flush(timeout=0.01)
        deadline = time.monotonic() + 60
        while True:
            missing = expected - set(all_uuids(collector))
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.2)


def test_sigkill_forwarding_wiring_with_sqlite_spool_delivers_every_returned_activate(
    tmp_path: Path, datafile_path: Path
) -> None:
    spool = f"sqlite:///{tmp_path}/spool.db"
    with run_collector(latency_ms=200) as collector:  # slow: a backlog at the kill
        activated, spooled = run_sdk_child_and_kill(
            tmp_path,
            datafile_path,
            spool,
            collector.base_url,
            n=20_000,
            wiring="forwarding",
            kill_after=3000,
        )
        # forwarding: dispatch_event ran inside activate(), so every returned activate
        # has its event in the spool (the child may die between the two prints)
        assert len(spooled) >= activated >= 3000
        before = collector.stats()["unique_events"]
        assert before < len(spooled)  # the kill left work for the restart
        missing = recover(spool, collector, set(spooled))
        assert not missing, f"{len(missing)} spooled events never delivered"
        stats = collector.stats()
        print(
            f"\nofficial SDK forwarding + sqlite spool, SIGKILL after {activated} activates: "
            f"{before} delivered before the kill, {stats['unique_events']} after restart, "
            f"{stats['duplicates']} duplicates dropped by uuid"
        )


def test_sigkill_default_wiring_loses_what_waits_in_the_sdk_queue_despite_the_spool(
    tmp_path: Path, datafile_path: Path
) -> None:
    """The official BatchEventProcessor holds events in memory before our durable
    dispatch_event sees them: a SIGKILL loses every activate in its current batch.
    Documented behaviour of the official processor, the reason wiring 2 is the durable one.
    """
    spool = f"sqlite:///{tmp_path}/spool.db"
    with run_collector() as collector:
        activated, spooled = run_sdk_child_and_kill(
            tmp_path,
            datafile_path,
            spool,
            collector.base_url,
            n=5,
            wiring="default",
            kill_after=5,
        )
        assert activated == 5
        assert spooled == []  # batch_size 10, flush_interval 30 s: all 5 still in memory
        assert not recover(spool, collector, set())
        time.sleep(0.5)
        assert collector.stats()["unique_events"] == 0  # all 5 returned activates lost


# -- 4. through the relay ---------------------------------------------------------------


def test_batch_dispatcher_to_relay_to_collector(
    collector: CollectorHandle, datafile_text: str, tmp_path: Path
) -> None:
    with run_relay(
        spool=f"sqlite:///{tmp_path}/relay.db",
        upstream=collector.events_url,
        upstream_eu=collector.eu_events_url,
        flush_interval=0.05,
    ) as relay:
        dispatcher = BatchDispatcher(endpoint=relay.base_url, flush_interval=0.05)
        sdk = forwarding_wiring(datafile_text, dispatcher)
        try:
            for i in range(2000):
                sdk.activate(EXPERIMENT, f"user-{i}")
                sdk.track("purchase", f"user-{i}", event_tags={"revenue": 100})
            assert dispatcher.flush(20).pending == 0
            assert dispatcher.stats().delivered == 4000  # the relay answered 2xx
            stats = collector.wait_for(unique_events=4000, timeout=30)
            assert stats["unique_events"] == 4000 and stats["duplicates"] == 0
            assert stats["requests"] < 400  # batched on both hops
            metrics = relay.metrics()
            assert metrics['xpevents_relay_spooled_visitors_total{region="us"}'] == 4000
        finally:
            sdk.close()
            dispatcher.close(5)


def test_default_event_dispatcher_to_relay_synchronously_in_the_caller(
    collector: CollectorHandle, datafile_text: str, tmp_path: Path
) -> None:
    """A synchronous dispatcher is fine behind a relay on localhost: each POST is the
    relay's spool write, a millisecond, never the upstream's latency."""
    collector.control(latency_ms=200)
    with run_relay(
        spool=f"sqlite:///{tmp_path}/relay.db",
        upstream=collector.events_url,
        upstream_eu=collector.eu_events_url,
        flush_interval=0.05,
    ) as relay:
        dispatcher = DefaultEventDispatcher(endpoint=relay.base_url, timeout=5)
        sdk = forwarding_wiring(datafile_text, dispatcher)  # synchronous in the caller
        try:
            started = time.perf_counter()
            for i in range(200):
                sdk.activate(EXPERIMENT, f"user-{i}")
            per_call = (time.perf_counter() - started) / 200
            assert per_call < 0.1  # far below the 200 ms upstream latency
            assert dispatcher.stats().delivered == 200  # answered by the relay
            stats = collector.wait_for(unique_events=200, timeout=30)
            assert stats["unique_events"] == 200 and stats["duplicates"] == 0
        finally:
            sdk.close()
            dispatcher.close()


def test_batch_dispatcher_to_a_relay_requiring_a_token(
    collector: CollectorHandle, datafile_text: str, tmp_path: Path
) -> None:
    """``--token``: the header comes from your own httpx client (kept on every request)."""
    import httpx

    with run_relay(
        spool=f"sqlite:///{tmp_path}/relay.db",
        upstream=collector.events_url,
        upstream_eu=collector.eu_events_url,
        flush_interval=0.05,
        token="s3cret",
    ) as relay:
        http = httpx.Client(headers={"Authorization": "Bearer s3cret"}, timeout=10)
        dispatcher = BatchDispatcher(endpoint=relay.base_url, http_client=http, flush_interval=0.05)
        refused = BatchDispatcher(endpoint=relay.base_url, flush_interval=0.05)
        sdk = forwarding_wiring(datafile_text, dispatcher)
        try:
            for i in range(100):
                sdk.activate(EXPERIMENT, f"user-{i}")
            assert dispatcher.flush(10).pending == 0
            assert collector.wait_for(unique_events=100, timeout=20)["unique_events"] == 100
            no_token = forwarding_wiring(datafile_text, refused)
            no_token.activate(EXPERIMENT, "user-x")
            no_token.close()
            refused.flush(5)
            assert refused.stats().failed == {"http_401": 1}  # permanent: dead-lettered
        finally:
            sdk.close()
            dispatcher.close(5)
            refused.close(1)
            http.close()
