"""The official optimizely-sdk 5.7.0's own event pipeline, and what xpevents does instead.

Each test shows one pitfall of the official ``EventDispatcher`` / ``BatchEventProcessor``
side by side with the xpevents dispatcher that replaces it (docs/official-sdk.md,
"Pitfalls"). The official dispatcher posts to ``event.url`` (the real events API); here
a shim hands it a copy of each event aimed at the local collector, and the suite's dead
proxy catches anything else. Other pitfalls are covered elsewhere: the silent drop of
the newest events and close order in tests/test_official_sdk_wirings.py, the dead thread
after fork in tests/test_official_sdk_fork.py.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from xpevents import DefaultEventDispatcher, RetryPolicy
from xpevents.dispatch.batch import BatchDispatcher
from xpevents.testing import CollectorHandle

EXPERIMENT = "checkout_button_color"


@pytest.fixture(autouse=True)
def _quiet_sdk() -> Iterator[None]:
    logging.getLogger("optimizely").setLevel(logging.CRITICAL)
    yield


class Retargeted:
    """The official synchronous ``EventDispatcher``, given a copy aimed at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def dispatch_event(self, event: Any) -> None:
        from optimizely.event_builder import Event
        from optimizely.event_dispatcher import EventDispatcher

        copy = Event(self.url, event.params, http_verb=event.http_verb, headers=event.headers)
        EventDispatcher.dispatch_event(copy)


class CountingProxy:
    """A loopback TCP forwarder that counts the connections made through it."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self._server.close()


@pytest.fixture
def proxy(collector: CollectorHandle) -> Iterator[CountingProxy]:
    host, port = collector.base_url.removeprefix("http://").split(":")
    p = CountingProxy((host, int(port)))
    yield p
    p.close()


def test_official_dispatcher_opens_a_new_connection_per_event_ours_reuses_one(
    collector: CollectorHandle, proxy: CountingProxy, datafile_text: str
) -> None:
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor

    def run(dispatcher: Any, n: int) -> int:
        before = proxy.connections
        sdk = optimizely.Optimizely(
            datafile_text,
            event_dispatcher=dispatcher,
            event_processor=ForwardingEventProcessor(dispatcher),
        )
        for i in range(n):
            sdk.activate(EXPERIMENT, f"user-{i}-{id(dispatcher)}")
        sdk.close()
        return proxy.connections - before

    # a new requests.Session, hence a new TCP connection, for every event
    assert run(Retargeted(proxy.base_url + "/v1/events"), 50) == 50
    ours = DefaultEventDispatcher(endpoint=proxy.base_url)
    assert run(ours, 50) == 1  # one pooled keep-alive connection
    ours.close()
    batch = BatchDispatcher(endpoint=proxy.base_url, flush_interval=0.05)
    made = run(batch, 2000)
    assert batch.flush(10).pending == 0
    batch.close(5)
    assert made <= 2  # max_concurrent_requests connections at most
    assert collector.wait_for(unique_events=2100, timeout=20)["duplicates"] == 0


def test_official_post_retry_never_fires_ours_does(
    collector: CollectorHandle, datafile_text: str
) -> None:
    """Its ``Retry(total=3, status_forcelist=[500, 502, 503, 504])`` keeps urllib3's
    default ``allowed_methods``, which excludes POST: a 5xx answer is final."""
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor

    collector.control(fail_rate=1.0, seed=3)  # every events request answered 500 or 503
    official = Retargeted(collector.events_url)
    sdk = optimizely.Optimizely(
        datafile_text, event_dispatcher=official, event_processor=ForwardingEventProcessor(official)
    )
    for i in range(20):
        sdk.activate(EXPERIMENT, f"user-{i}")
    sdk.close()
    assert collector.stats()["requests"] == 20  # one attempt each: no retry

    collector.reset()
    ours = DefaultEventDispatcher(
        endpoint=collector.base_url, retry=RetryPolicy(max_attempts=3, backoff_base=0.001)
    )
    sdk = optimizely.Optimizely(
        datafile_text, event_dispatcher=ours, event_processor=ForwardingEventProcessor(ours)
    )
    for i in range(20):
        sdk.activate(EXPERIMENT, f"user-{i}")
    sdk.close()
    assert collector.stats()["requests"] == 60  # 3 attempts each
    stats = ours.stats()
    assert stats.retried == 40 and sum(stats.failed.values()) == 20  # counted, by reason
    ours.close()


EXIT_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor
    logging.disable(logging.CRITICAL)
    datafile, endpoint, wiring, n = sys.argv[1:5]
    datafile = open(datafile).read()
    if wiring == "official":
        from optimizely.event_builder import Event
        from optimizely.event_dispatcher import EventDispatcher

        class Retargeted:
            def dispatch_event(self, event):
                EventDispatcher.dispatch_event(
                    Event(endpoint + "/v1/events", event.params, http_verb="POST",
                          headers=event.headers))

        sdk = optimizely.Optimizely(datafile, event_dispatcher=Retargeted())
    elif wiring == "xpevents":
        from xpevents.dispatch.batch import BatchDispatcher
        bd = BatchDispatcher(endpoint=endpoint)
        sdk = optimizely.Optimizely(datafile, event_dispatcher=bd,
                                    event_processor=ForwardingEventProcessor(bd))
    else:  # ours behind the SDK's processor, batched as its class default (10)
        from xpevents.dispatch.batch import BatchDispatcher
        bd = BatchDispatcher(endpoint=endpoint)
        sdk = optimizely.Optimizely(datafile, event_dispatcher=bd,
                                    event_processor_options={"batch_size": 10})
    for i in range(int(n)):
        sdk.activate("checkout_button_color", f"user-{i}")
    # a normal exit, without sdk.close() or dispatcher.close()
    """
)


@pytest.mark.parametrize(
    ("wiring", "n", "at_most", "at_least"),
    [
        ("official", 500, 20, 0),
        ("xpevents", 500, 500, 500),
        ("xpevents-behind-sdk-processor", 5, 0, 0),
    ],
)
def test_exit_without_close(
    collector_factory: Callable[..., CollectorHandle],
    datafile_path: Path,
    tmp_path: Path,
    wiring: str,
    n: int,
    at_most: int,
    at_least: int,
) -> None:
    """Official default wiring: its thread is a daemon with a 1,000-slot queue and no
    exit hook, so what is queued at exit is lost. Ours flushes at exit (atexit), but
    only what reached it: events still in the SDK processor's batch are lost."""
    collector = collector_factory(latency_ms=50)  # a real endpoint is not 0 ms away
    script = tmp_path / "exits.py"
    script.write_text(EXIT_SCRIPT)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script), str(datafile_path), collector.base_url, wiring, str(n)],
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    time.sleep(0.5)
    delivered = collector.stats()["unique_events"]
    print(f"\n{wiring}: {delivered} of {n} delivered at exit ({time.monotonic() - started:.1f} s)")
    assert at_least <= delivered <= at_most


def test_official_queue_full_drop_is_only_a_log_line_per_event(
    datafile_text: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No counter, no callback, no sign to the caller: one WARNING record per lost event
    (through the root logger, since its NoOpLogger propagates)."""
    from optimizely import optimizely

    logging.getLogger("optimizely").setLevel(logging.NOTSET)
    entered, release = threading.Event(), threading.Event()
    handed: list[Any] = []

    class Held:
        def dispatch_event(self, event: Any) -> None:
            entered.set()
            release.wait(30)
            handed.append(event)

    sdk = optimizely.Optimizely(datafile_text, event_dispatcher=Held())
    try:
        with caplog.at_level(logging.WARNING):
            sdk.activate(EXPERIMENT, "user-0")
            assert entered.wait(10)
            answers = [sdk.activate(EXPERIMENT, f"user-{i}") for i in range(1, 1201)]
        assert None not in answers
        refused = [r for r in caplog.records if "Payload not accepted" in r.getMessage()]
        assert len(refused) == 200
        assert not hasattr(sdk.event_processor, "stats")  # nothing to count them with
    finally:
        release.set()
        sdk.close()
    assert len(handed) == 1001


def test_the_noop_logger_warns_per_activate_and_the_documented_filter_hides_only_that(
    datafile_text: str,
) -> None:
    """docs/official-sdk.md: the official default logger propagates to the root logger
    and warns "User profile has invalid format." on every activate without a user
    profile service; the filter the docs give removes that line and nothing else."""
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor

    class _NoEmptyProfileWarning(logging.Filter):  # as in docs/official-sdk.md
        def filter(self, record: logging.LogRecord) -> bool:
            return record.getMessage() != "User profile has invalid format."

    class Lines(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    noop = logging.getLogger("optimizely.logger.NoOpLogger")
    lines = Lines()
    root = logging.getLogger()
    root.addHandler(lines)
    logging.getLogger("optimizely").setLevel(logging.NOTSET)

    class Nothing:
        def dispatch_event(self, event: Any) -> None:
            pass

    dispatcher = Nothing()
    sdk = optimizely.Optimizely(
        datafile_text,
        event_dispatcher=dispatcher,
        event_processor=ForwardingEventProcessor(dispatcher),
    )
    try:
        for i in range(5):
            sdk.activate(EXPERIMENT, f"user{i}")
        assert lines.lines.count("User profile has invalid format.") == 5
        del lines.lines[:]
        noop.addFilter(_NoEmptyProfileWarning())
        for i in range(5):
            sdk.activate(EXPERIMENT, f"user{i}")
        sdk.activate("no_such_experiment", "user0")
        assert "User profile has invalid format." not in lines.lines
        assert lines.lines, "other warnings and errors still reach the root logger"
    finally:
        for f in list(noop.filters):
            noop.removeFilter(f)
        root.removeHandler(lines)
        sdk.close()
