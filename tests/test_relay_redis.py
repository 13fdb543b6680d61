"""Several relays sharing one Redis Streams spool; one is killed mid-run."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from test_relay import FAST, payload_body, stored_uuids, wait_for_uuids
from xpevents.relay.testing import run_relay
from xpevents.spool.redis import RedisSpool
from xpevents.testing import CollectorHandle


@pytest.fixture
def redis_url() -> Iterator[str]:
    stream = f"xpevents-relay-test-{uuid.uuid4().hex[:12]}"
    url = f"redis://127.0.0.1:6379/0?stream={stream}"
    yield url
    spool = RedisSpool.from_url(url)
    try:
        spool.delete_all()
    finally:
        spool.close()


def test_two_relays_share_a_redis_spool_and_survive_a_kill(
    collector_factory: Callable[..., CollectorHandle], redis_url: str
) -> None:
    collector = collector_factory(fail_rate=0.2, seed=3, latency_ms=10)
    options = {
        "spool": redis_url,
        "upstream": collector.events_url,
        "upstream_eu": collector.eu_events_url,
        **FAST,
        "batch_size": 10,
    }
    accepted: list[str] = []
    lock = threading.Lock()
    counter = itertools.count()
    with run_relay(**options) as first, run_relay(**options) as second:
        stop = threading.Event()

        def traffic(base_url: str) -> None:
            with httpx.Client(base_url=base_url, trust_env=False, timeout=30) as http:
                while not stop.is_set():
                    batch = [f"redis-{next(counter)}" for _ in range(3)]
                    try:
                        status = http.post("/v1/events", content=payload_body(batch)).status_code
                    except httpx.TransportError:
                        time.sleep(0.01)  # the killed relay: refused, never answered 204
                        continue
                    if status == 204:
                        with lock:
                            accepted.extend(batch)

        threads = [
            threading.Thread(target=traffic, args=(relay.base_url,))
            for relay in (first, second)
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        first.kill()  # leased batches and queued visitors stay in the stream
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert len(accepted) > 100
        missing = wait_for_uuids(collector, set(accepted), timeout=60)
        assert not missing, f"{len(missing)} of {len(accepted)} accepted events never arrived"
        metrics = second.metrics()
        assert metrics["xpevents_relay_delivered_visitors_total"] > 0
    # Every accepted event arrived at least once; duplicates (a batch delivered by the
    # killed relay but not acknowledged) carry the same uuid and are dropped upstream.
    assert set(accepted) <= stored_uuids(collector)
