"""xpevents relay end to end: official SDK -> relay -> collector, faults, crashes, restarts."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from xpevents.relay.testing import RelayHandle, run_relay
from xpevents.testing import CollectorHandle

# Fast retries and short leases so that faults and crashes settle within seconds.
FAST: dict[str, Any] = {
    "flush_interval": 0.05,
    "backoff_base": 0.05,
    "backoff_max": 0.5,
    "lease": 2,
    "timeout": 1,
    "shutdown_timeout": 3,
}


def uuids_of(params: dict[str, Any]) -> list[str]:
    return [
        event["uuid"]
        for visitor in params["visitors"]
        for snapshot in visitor["snapshots"]
        for event in snapshot["events"]
    ]


class RelayPoster:
    """An SDK event dispatcher that posts to a relay and records what was answered 204."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.accepted: list[str] = []
        self.refused = 0
        self._http = httpx.Client(trust_env=False, timeout=30.0)

    def dispatch_event(self, event: Any) -> None:
        path = "/eu/v1/events" if "eu." in event.url else "/v1/events"
        try:
            response = self._http.post(
                self.base_url + path, json=event.params, headers=event.headers
            )
        except httpx.TransportError:
            self.refused += 1
            return
        if response.status_code == 204:
            self.accepted.extend(uuids_of(event.params))
        else:
            self.refused += 1

    def close(self) -> None:
        self._http.close()


def stored_uuids(collector: CollectorHandle) -> set[str]:
    out: set[str] = set()
    offset = 0
    while True:
        page = collector.events(limit=1000, offset=offset)
        out.update(e["uuid"] for e in page)
        if len(page) < 1000:
            return out
        offset += 1000


def wait_for_uuids(collector: CollectorHandle, expected: set[str], timeout: float) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        missing = expected - stored_uuids(collector)
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.1)


@pytest.fixture
def sdk_factory(datafile_text: str) -> Iterator[Callable[..., Any]]:
    from optimizely import optimizely

    logging.getLogger("optimizely").setLevel(logging.ERROR)
    from optimizely.event.event_processor import BatchEventProcessor, ForwardingEventProcessor

    made: list[Any] = []

    def make(dispatcher: Any, *, batch: bool = False) -> Any:
        """The official SDK; ``batch``: its BatchEventProcessor (merged payloads)."""
        processor = (
            BatchEventProcessor(dispatcher, batch_size=10, flush_interval=0.2, start_on_init=True)
            if batch
            else ForwardingEventProcessor(dispatcher)
        )
        sdk = optimizely.Optimizely(
            datafile_text, event_dispatcher=dispatcher, event_processor=processor
        )
        made.append(sdk)
        return sdk

    yield make
    for sdk in made:
        sdk.close()


def relay_for(collector: CollectorHandle, spool: str, **options: Any) -> Any:
    return run_relay(
        spool=spool,
        upstream=collector.events_url,
        upstream_eu=collector.eu_events_url,
        **{**FAST, **options},
    )


@pytest.mark.parametrize("forwarder", ["thread", "process"])
def test_sdk_through_relay_with_faults(
    collector_factory: Callable[..., CollectorHandle],
    sdk_factory: Callable[..., Any],
    tmp_path: Path,
    forwarder: str,
) -> None:
    flaky = collector_factory(fail_rate=0.3, rate_429=0.1, retry_after=1, seed=11)
    spool = f"sqlite:///{tmp_path}/relay.db"
    # Requests of at most ~25 visitors (~400 bytes each): 12 or more of them whatever
    # the timing (a forwarding child may gather more per request), so the seeded
    # faults (the first from the 7th request on) are always met.
    options = {"batch_size": 20, "max_batch_bytes": 10_000, "forwarder": forwarder}
    with relay_for(flaky, spool, **options) as relay:
        poster = RelayPoster(relay.base_url)
        sdk = sdk_factory(poster, batch=True)  # payloads of up to 10 visitors
        for i in range(150):
            sdk.activate("checkout_button_color", f"user-{i}")
            sdk.track("purchase", f"user-{i}", event_tags={"revenue": 100 + i})
        sdk.close()  # flushes its batch processor
        poster.close()
        assert poster.refused == 0
        assert len(poster.accepted) == 300
        assert not wait_for_uuids(flaky, set(poster.accepted), timeout=60)
        deadline = time.monotonic() + 10  # a forwarding child reports every 0.1 s
        while (metrics := relay.metrics())["xpevents_relay_delivered_visitors_total"] < 300:
            assert time.monotonic() < deadline, metrics
            time.sleep(0.05)
        assert metrics['xpevents_relay_spooled_visitors_total{region="us"}'] == 300
        assert metrics["xpevents_relay_upstream_requests_total"] >= 12
        assert metrics["xpevents_relay_retried_requests_total"] > 0
        assert metrics["xpevents_relay_delivered_visitors_total"] >= 300
        assert not any(k.startswith("xpevents_relay_failed_visitors_total") for k in metrics)
        assert metrics['xpevents_relay_upstream_request_seconds_count{outcome="2xx",region="us"}']
        ready = relay.readyz().json()
        assert ready["ready"] is True
        assert ready["upstream"]["last_success_at"] is not None
    stats = flaky.stats()
    assert stats["faults"]  # faults were injected and survived
    assert stats["unique_events"] == 300


def test_sigkill_mid_run_loses_nothing_answered_204(
    collector_factory: Callable[..., CollectorHandle],
    sdk_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    collector = collector_factory(fail_rate=0.2, seed=5, latency_ms=20)
    spool = f"sqlite:///{tmp_path}/relay.db"
    accepted: list[str] = []
    # Two crashes: each relay is killed while a sender thread keeps posting.
    for round_ in range(3):
        with relay_for(collector, spool, batch_size=10) as relay:
            poster = RelayPoster(relay.base_url)
            sdk = sdk_factory(poster)
            stop = threading.Event()

            def traffic(sdk: Any = sdk, stop: threading.Event = stop, r: int = round_) -> None:
                i = 0
                while not stop.is_set() and i < 400:
                    sdk.activate("homepage_hero_copy", f"r{r}-user-{i}")
                    i += 1

            thread = threading.Thread(target=traffic)
            thread.start()
            time.sleep(1.0)
            if round_ < 2:
                relay.kill()  # mid-run: requests in flight, batches leased, retries pending
            stop.set()
            thread.join(30)
            poster.close()
            accepted.extend(poster.accepted)
    assert len(accepted) > 50
    # A last relay on the same spool forwards what the killed ones left behind.
    with relay_for(collector, spool):
        missing = wait_for_uuids(collector, set(accepted), timeout=60)
    assert not missing, f"{len(missing)} events answered 204 never arrived"


def test_sigterm_flushes_then_keeps_the_rest_for_the_next_start(
    collector_factory: Callable[..., CollectorHandle], tmp_path: Path
) -> None:
    down = collector_factory(fail_rate=1.0)  # every request answered 500/503
    spool = f"sqlite:///{tmp_path}/relay.db"
    body = payload_body(["a", "b", "c"])
    with relay_for(down, spool, shutdown_timeout=1) as relay:
        assert relay.http.post("/v1/events", content=body).status_code == 204
        started = time.monotonic()
        assert relay.terminate() == 0
        assert time.monotonic() - started < 10
        assert "kept in the spool" in relay.stderr_text()
    assert down.stats()["unique_events"] == 0
    down.control(fail_rate=0.0)
    with relay_for(down, spool):
        assert down.wait_for(unique_events=3, timeout=30)["unique_events"] == 3


def payload_body(uuids: list[str], *, account: str = "12345", spaced: bool = False) -> bytes:
    """An event API body with one conversion visitor per uuid (compact, or with spaces)."""
    visitors = ",".join(
        '{"visitor_id": "v-UUID", "snapshots": [{"events": [{"entity_id": "9", '
        '"uuid": "UUID", "key": "purchase", "timestamp": 1700000000000}]}]}'.replace("UUID", u)
        for u in uuids
    )
    if not spaced:
        visitors = visitors.replace(": ", ":").replace(", ", ",")
    head = (
        '{"account_id":"ACCOUNT","project_id":"77","revision":"3","client_name":"php-sdk",'
        '"client_version":"4.0.0","anonymize_ip":true,"enrich_decisions":true,'
    ).replace("ACCOUNT", account)
    return (head + '"visitors":[' + visitors + "]}").encode()


def test_eu_path_goes_to_the_eu_upstream(
    collector_factory: Callable[..., CollectorHandle], tmp_path: Path
) -> None:
    us = collector_factory()
    eu = collector_factory()
    with run_relay(
        spool=f"sqlite:///{tmp_path}/r.db",
        upstream=us.events_url,
        upstream_eu=eu.eu_events_url,
        **FAST,
    ) as relay:
        http = relay.http
        assert http.post("/v1/events", content=payload_body(["us1"])).status_code == 204
        assert http.post("/eu/v1/events", content=payload_body(["eu1", "eu2"])).status_code == 204
        assert us.wait_for(unique_events=1)["requests_by_region"] == {"us": 1, "eu": 0}
        assert eu.wait_for(unique_events=2)["requests_by_region"] == {"us": 0, "eu": 1}


def relay_handle_ready(relay: RelayHandle) -> bool:
    return bool(relay.readyz().status_code == 200)
