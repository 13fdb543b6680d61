"""The collector's datafile server on 127.0.0.1: PUT/GET, ETag/304, the auth path, the
collector's faults on the datafile path, and a polling manager fetching from it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from xpevents import Client
from xpevents.collector import Collector, CollectorServer
from xpevents.config import PollingConfigManager

FIXTURE = Path(__file__).parent / "fixtures" / "datafile.json"


def datafile(revision: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    data["revision"] = str(revision)
    return data


@pytest.fixture
def collector() -> Iterator[tuple[Collector, httpx.Client]]:
    collector = Collector()
    with (
        CollectorServer(collector, port=0) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=10) as http,
    ):
        yield collector, http
    collector.close()


def test_put_get_etag_and_304(collector: tuple[Collector, httpx.Client]) -> None:
    _, http = collector
    assert http.get("/datafiles/k1.json").status_code == 404
    put = http.put("/datafiles/k1.json", json=datafile(1))
    assert put.status_code == 201 and put.json()["etag"] == put.headers["etag"]
    got = http.get("/datafiles/k1.json")
    assert got.status_code == 200 and got.json()["revision"] == "1"
    assert got.headers["content-type"].startswith("application/json")
    etag, modified = got.headers["etag"], got.headers["last-modified"]
    assert http.get("/datafiles/k1.json", headers={"If-None-Match": etag}).status_code == 304
    assert (
        http.get("/datafiles/k1.json", headers={"If-Modified-Since": modified}).status_code == 304
    )
    again = http.post("/datafiles/k1.json", json=datafile(2))  # POST works too
    assert again.status_code == 200 and again.headers["etag"] != etag
    fresh = http.get("/datafiles/k1.json", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.json()["revision"] == "2"
    assert http.get("/datafiles").json()["datafiles"][0]["sdk_key"] == "k1"
    assert http.delete("/datafiles/k1.json").status_code == 204
    assert http.get("/datafiles/k1.json").status_code == 404


def test_a_put_must_be_a_json_object_unless_unchecked(
    collector: tuple[Collector, httpx.Client],
) -> None:
    _, http = collector
    bad = http.put("/datafiles/k2.json", content=b"<html>oops")
    assert bad.status_code == 400 and "unchecked=1" in bad.json()["error"]
    assert http.put("/datafiles/k2.json", content=b"[1]").status_code == 400
    garbage = http.put("/datafiles/k2.json?unchecked=1", content=b"{trunc")
    assert garbage.status_code == 201
    assert http.get("/datafiles/k2.json").content == b"{trunc"


def test_the_auth_path_checks_the_bearer_token(collector: tuple[Collector, httpx.Client]) -> None:
    _, http = collector
    http.put("/datafiles/sec.json?access_token=tok", json=datafile(1))
    assert http.get("/datafiles/sec.json").status_code == 403
    assert http.get("/datafiles/auth/sec.json").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert http.get("/datafiles/auth/sec.json", headers=wrong).status_code == 403
    good = http.get("/datafiles/auth/sec.json", headers={"Authorization": "Bearer tok"})
    assert good.status_code == 200 and good.json()["revision"] == "1"
    http.put("/datafiles/open.json", json=datafile(1))
    assert http.get("/datafiles/auth/open.json").status_code == 200  # no token set


@pytest.mark.parametrize(
    ("control", "check"),
    [
        ({"fail_rate": 1.0}, lambda r: r.status_code in (500, 503)),
        ({"rate_429": 1.0, "retry_after": 0.5}, lambda r: r.headers["retry-after"] == "0.5"),
        ({"html_rate": 1.0}, lambda r: r.status_code == 200 and r.text.startswith("<!DOCTYPE")),
    ],
    ids=["5xx", "429", "html-200"],
)
def test_the_collector_faults_apply_to_the_datafile_path(
    collector: tuple[Collector, httpx.Client], control: dict[str, Any], check: Any
) -> None:
    app, http = collector
    http.put("/datafiles/f.json", json=datafile(1))
    assert http.post("/control", json=control).status_code == 200
    response = http.get("/datafiles/f.json")
    assert check(response)
    assert sum(app.datafiles.requests.values()) == 1
    http.post("/control", json={k: 0.0 for k in control})
    assert http.get("/datafiles/f.json").status_code == 200


def test_latency_and_dropped_connections(collector: tuple[Collector, httpx.Client]) -> None:
    _, http = collector
    http.put("/datafiles/f.json", json=datafile(1))
    http.post("/control", json={"latency_ms": 200})
    started = time.monotonic()
    assert http.get("/datafiles/f.json").status_code == 200
    assert time.monotonic() - started >= 0.2
    http.post("/control", json={"latency_ms": 0, "drop_rate": 1.0})
    with pytest.raises(httpx.TransportError):
        http.get("/datafiles/f.json")
    http.post("/control", json={"drop_rate": 0.0})
    assert http.get("/datafiles/f.json").status_code == 200


def test_a_client_polls_the_collector_and_refuses_its_faults(
    collector: tuple[Collector, httpx.Client],
) -> None:
    app, http = collector
    http.put("/datafiles/poll.json", json=datafile(1))
    manager = PollingConfigManager(
        "poll",
        url_template=str(http.base_url).rstrip("/") + "/datafiles/{sdk_key}.json",
        update_interval=0.05,
        backoff_base=0.02,
    )
    with Client(config_manager=manager, event_dispatcher=_Nothing()) as client:
        assert client.get_variation("checkout_button_color", "u1") is not None
        deadline = time.monotonic() + 5
        while app.datafiles.requests["not_modified"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.datafiles.requests["not_modified"] >= 2  # 304s
        http.post("/control", json={"html_rate": 1.0})
        while client.config_stats().failures.get("invalid_datafile", 0) < 1:
            assert time.monotonic() < deadline + 5
            time.sleep(0.02)
        http.post("/control", json={"html_rate": 0.0})
        http.put("/datafiles/poll.json", json=datafile(2))
        while client.config_stats().revision != "2":
            assert time.monotonic() < deadline + 10
            time.sleep(0.02)


class _Nothing:
    def dispatch_event(self, event: Any) -> None:
        pass
