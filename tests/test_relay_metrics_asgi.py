"""The relay's ``GET /metrics`` (``prometheus_client.make_asgi_app``) and its upstream log lines.

Real relay and collector processes on loopback, a SQLite spool in ``tmp_path``; both
forwarder modes, since with ``--forwarder process`` the forwarding figures come from
the child's reports.
"""

from __future__ import annotations

import gzip
import logging
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from test_relay import FAST, payload_body, wait_for_uuids
from xpevents._version import __version__
from xpevents.relay.testing import RelayHandle, run_relay
from xpevents.testing import CollectorHandle

FORWARDERS = pytest.mark.parametrize("forwarder", ["thread", "process"])


def relay_for(
    collector: CollectorHandle, tmp_path: Path, forwarder: str
) -> AbstractContextManager[RelayHandle]:
    return run_relay(
        spool=f"sqlite:///{tmp_path}/relay.db",
        upstream=collector.events_url,
        upstream_eu=collector.eu_events_url,
        forwarder=forwarder,
        **FAST,
    )


def scrape(relay: RelayHandle, **headers: str) -> tuple[httpx.Response, dict[str, list[Sample]]]:
    """``GET /metrics`` with a fresh client: the response and the samples by family."""
    with httpx.Client(trust_env=False, timeout=10) as http:
        response = http.get(relay.base_url + "/metrics", headers=headers)
    assert response.status_code == 200, response.text
    families = {f.name: f.samples for f in text_string_to_metric_families(response.text)}
    return response, families


def value(families: dict[str, list[Sample]], family: str, name: str, **labels: str) -> float:
    matches = [s.value for s in families[family] if s.name == name and s.labels == labels]
    assert len(matches) == 1, (name, labels, families[family])
    return matches[0]


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@FORWARDERS
def test_metrics_has_process_metrics_and_the_relay_names(
    collector_factory: Callable[..., CollectorHandle], tmp_path: Path, forwarder: str
) -> None:
    collector = collector_factory()
    with relay_for(collector, tmp_path, forwarder) as relay:
        uuids = [f"m-{i}" for i in range(6)]
        assert relay.http.post("/v1/events", content=payload_body(uuids)).status_code == 204
        assert not wait_for_uuids(collector, set(uuids), timeout=30)

        def delivered() -> bool:  # a forwarding child reports every 0.1 s
            families = scrape(relay)[1]
            return value(families, "xpevents_relay_delivered_visitors",
                         "xpevents_relay_delivered_visitors_total") == 6  # fmt: skip

        assert wait_until(delivered, timeout=10)
        response, families = scrape(relay)

        # prometheus_client's process, platform and GC collectors: the relay process.
        for family in (
            "process_cpu_seconds",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
            "python_gc_collections",
        ):
            assert families[family], family
        assert value(families, "process_cpu_seconds", "process_cpu_seconds_total") > 0
        (info,) = families["python_info"]
        assert info.value == 1 and info.labels["implementation"]
        assert value(families, "xpevents_build_info", "xpevents_build_info",
                     version=__version__) == 1  # fmt: skip

        # The names served before make_asgi_app, with their labels, still parse.
        spooled = "xpevents_relay_spooled_visitors"
        assert value(families, spooled, spooled + "_total", region="us") == 6
        assert value(families, spooled, spooled + "_total", region="eu") == 0
        requests = "xpevents_relay_requests"
        assert value(families, requests, requests + "_total", region="us", status="204") == 1
        assert value(families, "xpevents_relay_spool_depth", "xpevents_relay_spool_depth") == 0
        latency = "xpevents_relay_upstream_request_seconds"
        assert value(families, latency, latency + "_count", region="us", outcome="2xx") >= 1
        assert value(families, latency, latency + "_bucket",
                     region="us", outcome="2xx", le="+Inf") >= 1  # fmt: skip
        for family in ("lost_visitors", "failed_visitors", "dropped_visitors"):
            assert f"xpevents_relay_{family}" in families  # by reason, none yet
        # make_asgi_app's default: the 0.0.4 text format, labelled as such.
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        # Conventions of xpevents.metrics: no _created series.
        assert not [s.name for f in families.values() for s in f if s.name.endswith("_created")]

        if forwarder == "process":  # the child's own CPU and memory
            child = "xpevents_relay_forwarder_process_cpu_seconds"
            assert value(families, child, child + "_total") > 0
            assert families["xpevents_relay_forwarder_process_resident_memory_bytes"]
        else:
            assert not [f for f in families if f.startswith("xpevents_relay_forwarder_")]


def test_metrics_is_gzipped_when_asked_and_speaks_openmetrics(
    collector_factory: Callable[..., CollectorHandle], tmp_path: Path
) -> None:
    collector = collector_factory()
    with (
        relay_for(collector, tmp_path, "thread") as relay,
        httpx.Client(trust_env=False, timeout=10) as http,
    ):
        url = relay.base_url + "/metrics"
        with http.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as response:
            raw = b"".join(response.iter_raw())
        assert response.headers["content-encoding"] == "gzip"
        assert b"process_cpu_seconds_total" in gzip.decompress(raw)
        with http.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response:
            raw = b"".join(response.iter_raw())
        assert "content-encoding" not in response.headers
        assert b"xpevents_relay_requests_total" in raw

        openmetrics = http.get(url, headers={"Accept": "application/openmetrics-text"})
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.endswith("# EOF\n")
        assert http.post(url).status_code == 405


@FORWARDERS
def test_upstream_failure_and_recovery_log_lines_point_to_metrics(
    collector_factory: Callable[..., CollectorHandle], tmp_path: Path, forwarder: str
) -> None:
    down = collector_factory(fail_rate=1.0)  # every request answered 500/503
    with relay_for(down, tmp_path, forwarder) as relay:
        uuids = [f"f-{i}" for i in range(4)]
        assert relay.http.post("/v1/events", content=payload_body(uuids)).status_code == 204
        assert wait_until(lambda: "are failing" in relay.stderr_text(), timeout=30)
        failing = [line for line in relay.stderr_text().splitlines() if "are failing" in line]
        assert len(failing) == 1, failing  # one line per episode
        assert "see the relay's /metrics and /readyz" in failing[0]
        assert "stats()" not in relay.stderr_text()

        down.control(fail_rate=0.0)
        assert not wait_for_uuids(down, set(uuids), timeout=30)
        assert wait_until(lambda: "delivered again" in relay.stderr_text(), timeout=10)
        lines = relay.stderr_text().splitlines()
        (recovered,) = [line for line in lines if "delivered again" in line]
        # At the relay's default --log-level warning, as the failing line.
        assert "WARNING" in recovered, recovered
        assert re.search(
            r"delivered again after \d+ failed request\(s\) over \d+\.\d s; "
            r"\d+ visitor\(s\) waiting",
            recovered,
        ), recovered


def test_dispatchers_in_an_application_keep_their_wording(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """The hint is the relay's: a plain dispatcher's circuit still says stats(), at INFO."""
    from xpevents.relay.app import RelaySettings
    from xpevents.relay.pipeline import RELAY_HINT, _forwarder
    from xpevents.send.circuit import DEFAULT_HINT, Circuits
    from xpevents.send.retry import RetryPolicy
    from xpevents.spool.memory import MemorySpool

    url = "http://127.0.0.1:9/v1/events"
    plain = Circuits(3, RetryPolicy())
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(204))) as http:
        relay = _forwarder(MemorySpool(), http, RelaySettings())
        try:
            relayed = relay._core.circuits
            with caplog.at_level(logging.INFO, "xpevents.dispatch"):
                for circuits, at in ((plain, 100.0), (relayed, 200.0)):
                    circuits.failed(url, at, detail="HTTP 503")
                    circuits.succeeded(url, at + 2.5)
        finally:
            relay.close(timeout=1)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [
        (logging.WARNING, f"events to {url} are failing (HTTP 503); retrying with backoff "
                          f"(one line per episode; {DEFAULT_HINT})"),
        (logging.INFO, f"events to {url} are delivered again after 1 failed request(s) over 2.5 s"),
        (logging.WARNING, f"events to {url} are failing (HTTP 503); retrying with backoff "
                          f"(one line per episode; {RELAY_HINT})"),
        (logging.WARNING, f"events to {url} are delivered again after 1 failed request(s) over "
                          "2.5 s; 0 visitor(s) waiting"),
    ]  # fmt: skip
    assert DEFAULT_HINT == "see stats()"
