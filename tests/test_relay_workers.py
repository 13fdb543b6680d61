"""``xpevents relay --workers N``: ingest processes on one port and one spool.

Real relay and collector processes on loopback, a SQLite spool in ``tmp_path``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from test_relay import FAST, payload_body, stored_uuids, wait_for_uuids
from test_relay_forwarder_process import gone, wait_until
from xpevents.relay.testing import RelayHandle, run_relay
from xpevents.testing import CollectorHandle

CLOSE = {"Connection": "close"}  # a new connection per request: spread over the workers
REQUESTS = 'xpevents_relay_requests_total{region="us",status="204"}'


def workers_relay(collector: CollectorHandle, spool: str, **options: Any) -> Any:
    return run_relay(
        spool=spool,
        upstream=collector.events_url,
        upstream_eu=collector.eu_events_url,
        workers=2,
        **{**FAST, **options},
    )


def post(relay: RelayHandle, prefix: str, n: int, per_request: int = 2) -> list[str]:
    sent: list[str] = []
    for start in range(0, n, per_request):
        uuids = [f"{prefix}-{i}" for i in range(start, min(n, start + per_request))]
        response = relay.http.post("/v1/events", content=payload_body(uuids), headers=CLOSE)
        assert response.status_code == 204, response.text
        sent += uuids
    return sent


def workers_of(relay: RelayHandle) -> list[dict[str, Any]]:
    # Not on a kept-alive connection: one to a worker the test kills would be reset.
    workers = relay.http.get("/readyz", headers=CLOSE).json()["forwarder"]["workers"]
    assert isinstance(workers, list)
    return workers


def restarts(relay: RelayHandle) -> int | None:
    """Worker 0's restarts; ``None`` for a connection the kernel gave the dying worker."""
    try:
        return int(workers_of(relay)[0]["restarts"])
    except httpx.TransportError:
        return None


def test_two_workers_deliver_every_event_exactly_once(
    collector_factory: Callable[..., CollectorHandle], tmp_path: Path
) -> None:
    collector = collector_factory()
    with workers_relay(collector, f"sqlite:///{tmp_path}/relay.db") as relay:
        ready = relay.http.get("/readyz", headers=CLOSE)
        assert ready.status_code == 200, ready.text
        workers = workers_of(relay)
        assert [w["index"] for w in workers] == [0, 1]
        assert all(w["running"] and w["pid"] != relay.pid for w in workers)
        # Both workers answer (SO_REUSEPORT spreads new connections over them).
        seen = {relay.http.get("/readyz", headers=CLOSE).json()["forwarder"]["worker"]}
        assert wait_until(
            lambda: (
                seen.add(relay.http.get("/readyz", headers=CLOSE).json()["forwarder"]["worker"])
                or seen == {0, 1}
            ),
            timeout=10,
        )
        sent = post(relay, "a", 120)
        assert not wait_for_uuids(collector, set(sent), timeout=60)
        # Counters are summed over the workers, whichever answers the scrape.
        for _ in range(6):
            text = relay.http.get("/metrics", headers=CLOSE).text
            samples = dict(
                line.rpartition(" ")[::2] for line in text.splitlines() if line[:1] != "#"
            )
            assert float(samples[REQUESTS]) == 60
            assert float(samples['xpevents_relay_spooled_visitors_total{region="us"}']) == 120
        delivered = "xpevents_relay_delivered_visitors_total 120.0"
        assert wait_until(
            lambda: delivered in relay.http.get("/metrics", headers=CLOSE).text, timeout=10
        )
    stats = collector.stats()
    assert stats["unique_events"] == 120
    assert stats["duplicates"] == 0


def test_a_killed_worker_is_restarted_and_nothing_is_lost(
    collector_factory: Callable[..., CollectorHandle], tmp_path: Path
) -> None:
    collector = collector_factory()
    with workers_relay(collector, f"sqlite:///{tmp_path}/relay.db") as relay:
        before = post(relay, "before", 40)
        first = workers_of(relay)[0]["pid"]
        os.kill(first, signal.SIGKILL)
        # Once the supervisor has seen the exit (the socket is closed by then; a
        # connection the kernel gave it just before is reset), the other worker takes
        # every new connection.
        assert wait_until(lambda: restarts(relay) == 1, timeout=10)
        assert gone(first)
        during = post(relay, "during", 20)
        assert wait_until(
            lambda: (w := workers_of(relay)[0])["running"] and w["pid"] != first, timeout=30
        )
        worker = workers_of(relay)[0]
        assert worker["restarts"] == 1
        assert worker["last_exit"] == -signal.SIGKILL
        after = post(relay, "after", 40)
        sent = before + during + after
        assert not wait_for_uuids(collector, set(sent), timeout=60)
        assert stored_uuids(collector) == set(sent)
        # The dead worker's counts are kept: the sum does not go back.
        text = relay.http.get("/metrics", headers=CLOSE).text
        assert f"{REQUESTS} {len(sent) / 2}" in text.splitlines()
        stderr = relay.stderr_text()
    assert "ingest worker 0 exited (code -9); restarting it in 0.5 s" in stderr
    assert collector.stats()["duplicates"] == 0


def test_sigterm_drains_every_worker_and_loses_nothing_answered(
    collector_factory: Callable[..., CollectorHandle], tmp_path: Path
) -> None:
    collector = collector_factory(latency_ms=20)
    spool = f"sqlite:///{tmp_path}/relay.db"
    answered: list[str] = []
    stop = threading.Event()
    with workers_relay(collector, spool, log_level="info") as relay:
        pids = [w["pid"] for w in workers_of(relay)]

        def client(name: str) -> None:
            with httpx.Client(base_url=relay.base_url, trust_env=False, timeout=10) as http:
                for i in range(100_000):
                    if stop.is_set():
                        return
                    uuid = f"{name}-{i}"
                    try:
                        response = http.post("/v1/events", content=payload_body([uuid]))
                    except httpx.HTTPError:
                        return  # the relay is closing its connections
                    if response.status_code == 204:
                        answered.append(uuid)

        threads = [threading.Thread(target=client, args=(f"c{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        assert wait_until(lambda: len(answered) >= 100, timeout=30)
        started = time.monotonic()
        assert relay.terminate() == 0  # SIGTERM while requests are in flight
        assert time.monotonic() - started < 30
        stop.set()
        for thread in threads:
            thread.join(15)
        assert all(wait_until(lambda pid=pid: gone(pid), timeout=10) for pid in pids)
        stderr = relay.stderr_text()
    assert "draining 2 ingest workers" in stderr
    assert "forwarder process" in stderr and "stopped (exit code 0)" in stderr
    # Every visitor answered 204 is delivered: during the drain, or by the next start.
    with workers_relay(collector, spool):
        assert not wait_for_uuids(collector, set(answered), timeout=60)
    assert collector.stats()["duplicates"] == 0


def test_workers_need_a_durable_spool(
    collector_factory: Callable[..., CollectorHandle],
) -> None:
    collector = collector_factory()
    try:
        with workers_relay(collector, "memory://"):
            raise AssertionError("the relay started")
    except RuntimeError as exc:
        assert "--workers 2 needs a durable --spool" in str(exc)


def test_workers_and_forwarder_stop_when_the_supervisor_is_killed(
    collector_factory: Callable[..., CollectorHandle], tmp_path: Path
) -> None:
    collector = collector_factory()
    with workers_relay(collector, f"sqlite:///{tmp_path}/relay.db") as relay:
        sent = post(relay, "a", 20)
        ready = relay.http.get("/readyz", headers=CLOSE).json()["forwarder"]
        children = [w["pid"] for w in ready["workers"]] + [ready["pid"]]
        relay.kill()  # SIGKILL: no drain at all
        # Workers notice their parent is gone (within 0.5 s) and stop as on SIGTERM;
        # the forwarder's stdin closes and it stops too.
        assert all(wait_until(lambda pid=pid: gone(pid), timeout=20) for pid in children)
    # Everything answered 204 was committed: a new relay delivers what is left.
    with workers_relay(collector, f"sqlite:///{tmp_path}/relay.db"):
        assert not wait_for_uuids(collector, set(sent), timeout=60)
