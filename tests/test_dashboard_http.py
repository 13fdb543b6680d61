"""The dashboard's HTTP side: ``GET /events`` filters, ``/metrics``, ``/stats`` keys, the
feed, the HTML form of ``/control``, ``--datafile`` and the SRM arithmetic.

A real collector process (``xpevents.testing.run_collector``) receives events from a
real ``Client`` + ``BatchDispatcher`` and hand-written payloads over HTTP.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from xpevents import BatchDispatcher, Client
from xpevents.collector.cli import collector_command
from xpevents.collector.dashboard.experiments import allocation_weights
from xpevents.collector.dashboard.srm import SRM_ALPHA, chi_square_p, srm_check
from xpevents.decide.datafile import load_config
from xpevents.example import example_datafile
from xpevents.testing import CollectorHandle, run_collector

EXPERIMENT = "checkout_button_color"
USERS = 5


def legacy_payload(visitor: str = "legacy-1", uuid: str = "u-legacy") -> dict[str, Any]:
    """An impression with no decision metadata (as pre-flag SDKs send it)."""
    return {
        "account_id": "1",
        "visitors": [
            {
                "visitor_id": visitor,
                "attributes": [],
                "snapshots": [
                    {
                        "decisions": [
                            {"campaign_id": "9", "experiment_id": "exp-9", "variation_id": "v-9"}
                        ],
                        "events": [
                            {
                                "entity_id": "9",
                                "uuid": uuid,
                                "key": "campaign_activated",
                                "timestamp": 1_700_000_000_000,
                            }
                        ],
                    }
                ],
            }
        ],
    }


def send(handle: CollectorHandle, users: int = USERS) -> None:
    dispatcher = BatchDispatcher(endpoint=handle.base_url, flush_interval=0.05)
    with Client(example_datafile(), event_dispatcher=dispatcher) as client:
        for i in range(users):
            assert client.activate(EXPERIMENT, f"user-{i}", {"country": "US"}) is not None
            client.track("purchase", f"user-{i}", event_tags={"revenue": 10, "value": 1.5})
    dispatcher.close(timeout=10)
    handle.wait_for(unique_events=2 * users)


@pytest.fixture(scope="module")
def handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorHandle]:
    path = tmp_path_factory.mktemp("dash-http") / "datafile.json"
    path.write_text(example_datafile())
    with run_collector(datafile=path) as handle:
        yield handle


@pytest.fixture
def http(handle: CollectorHandle) -> Iterator[httpx.Client]:
    handle.reset()
    handle.control(fail_rate=0, rate_429=0, drop_rate=0)
    with httpx.Client(base_url=handle.base_url, trust_env=False, timeout=10) as client:
        yield client


def events(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = http.get("/events", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_events_filters(handle: CollectorHandle, http: httpx.Client) -> None:
    send(handle)
    assert http.post("/v1/events", json=legacy_payload()).status_code == 204
    assert len(events(http)) == 2 * USERS + 1
    one = events(http, visitor="user-1")
    assert len(one) == 2 and {e["visitor_id"] for e in one} == {"user-1"}
    assert len(events(http, key="purchase")) == USERS
    assert len(events(http, type="impression")) == USERS + 1
    assert {e["key"] for e in events(http, type="conversion")} == {"purchase"}
    by_key = events(http, experiment=EXPERIMENT)
    assert len(by_key) == USERS
    experiment_id = by_key[0]["experiment_id"]
    assert events(http, experiment=experiment_id) == by_key
    assert [e["visitor_id"] for e in events(http, experiment="exp-9")] == ["legacy-1"]
    assert events(http, experiment="nope") == []
    assert len(events(http, status="accepted")) == 2 * USERS + 1
    assert events(http, status="fault") == []
    assert events(http, visitor="user-2", type="conversion")[0]["revenue"] == 10
    ids = [e["id"] for e in events(http)]
    assert [e["id"] for e in events(http, order="desc")] == ids[::-1]
    assert [e["id"] for e in events(http, after=ids[-3])] == ids[-2:]
    assert [e["id"] for e in events(http, limit=2, offset=1)] == ids[1:3]
    assert len(events(http, visitor="", key="")) == len(ids)  # empty = absent (HTML forms)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("vistor=user-1", "unknown query parameter 'vistor'; did you mean 'visitor'?"),
        ("type=click", "type"),
        ("status=ok", "status"),
        ("limit=-1", "limit"),
        ("offset=x", "offset"),
        ("order=up", "order"),
    ],
)
def test_events_bad_parameter_is_400_naming_it(http: httpx.Client, query: str, named: str) -> None:
    response = http.get(f"/events?{query}")
    assert response.status_code == 400
    assert named in response.json()["error"]


def test_metrics_in_prometheus_format(handle: CollectorHandle, http: httpx.Client) -> None:
    send(handle, 3)
    assert http.post("/v1/events", content=b"{not json").status_code == 400
    handle.control(fail_rate=1.0, seed=1)
    assert http.post("/v1/events", json=legacy_payload()).status_code in (500, 503)
    handle.control(fail_rate=0)
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    stats = handle.stats()
    assert samples[("xpevents_collector_unique_events_total", ())] == stats["unique_events"] == 6
    assert samples[("xpevents_collector_visitors_total", ())] == stats["visitors"]
    assert samples[("xpevents_collector_duplicate_events_total", ())] == 0
    assert samples[("xpevents_collector_invalid_payloads_total", ())] == 1
    assert samples[("xpevents_collector_requests_total", (("status", "400"),))] == 1
    faults = {k[1]: v for k, v in samples.items() if k[0] == "xpevents_collector_faults_total"}
    assert sum(faults.values()) == 1
    assert samples[("xpevents_collector_conversions_total", (("key", "purchase"),))] == 3
    assert not any(name.endswith("_created") for name, _ in samples)


def test_stats_impressions_by_key(handle: CollectorHandle, http: httpx.Client) -> None:
    send(handle, 4)
    assert http.post("/v1/events", json=legacy_payload()).status_code == 204
    stats = handle.stats()
    by_key = stats["impressions_by_key"]
    assert sum(by_key[EXPERIMENT].values()) == 4
    assert set(by_key[EXPERIMENT]) <= {"control", "variant_a", "variant_b"}
    assert by_key["exp-9"] == {"v-9": 1}  # no metadata, not in the datafile: the ids
    experiment_id = next(e for e in stats["impressions"] if e != "exp-9")
    assert sum(stats["impressions"][experiment_id].values()) == 4  # old field unchanged


def test_stats_keys_from_metadata_without_datafile(collector: CollectorHandle) -> None:
    send(collector, 2)
    by_key = collector.stats()["impressions_by_key"]
    assert list(by_key) == [EXPERIMENT]


def test_feed_lists_outcomes_and_experiments(handle: CollectorHandle, http: httpx.Client) -> None:
    send(handle, 3)
    payload = legacy_payload()
    assert http.post("/v1/events", json=payload).status_code == 204
    assert http.post("/v1/events", json=payload).status_code == 204  # all duplicates
    assert http.post("/v1/events", json={"account_id": 1}).status_code == 400
    handle.control(rate_429=1.0, retry_after=0.1)
    assert http.post("/v1/events", json=payload).status_code == 429
    handle.control(rate_429=0, drop_rate=1.0)
    with pytest.raises(httpx.TransportError):
        http.post("/v1/events", json=payload)
    handle.control(drop_rate=0)
    feed = http.get("/dashboard/feed").json()
    outcomes = [r.get("outcome") for r in feed["rows"] if r["type"] == "request"]
    assert sorted(outcomes) == ["duplicate", "fault", "fault", "rejected"]
    statuses = {r["status"] for r in feed["rows"] if r.get("outcome") == "fault"}
    assert statuses == {"fault (429)", "fault (no response)"}
    rejected = next(r for r in feed["rows"] if r.get("outcome") == "rejected")
    assert "visitors" in rejected["raw"] and rejected["status"] == "rejected (400)"
    totals = {o: sum(p[o] for p in feed["series"]) for o in feed["series"][0] if o != "t"}
    assert totals == {"accepted": 7, "duplicate": 1, "rejected": 1, "fault": 2}
    assert len(feed["series"]) == 120
    summary = next(s for s in feed["experiments"] if s["key"] == EXPERIMENT)
    assert summary["impressions"] == 3
    assert sum(v["conversions"] for v in summary["variations"].values()) == 3
    assert sum(v["revenue"] for v in summary["variations"].values()) == 30
    assert summary["srm"]["dof"] == 2 and 0 <= summary["srm"]["p_value"] <= 1
    only_faults = http.get("/dashboard/feed", params={"status": "fault"}).json()["rows"]
    assert [r["outcome"] for r in only_faults] == ["fault", "fault"]
    assert http.get("/dashboard/feed?after_seq=x").status_code == 400
    http.post("/reset")
    assert http.get("/dashboard/feed").json()["rows"] == []


def test_page_headers_and_errors(http: httpx.Client) -> None:
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert http.get("/?bogus=1").status_code == 400
    assert http.get("/dashboard/static/dashboard.js").status_code == 200
    assert http.get("/dashboard/static/../app.py").status_code == 404
    assert http.get("/dashboard/static/page.html").status_code == 404
    script = http.get("/dashboard/static/dashboard.js").text
    assert "innerHTML" not in script.replace("no innerHTML", "")


def test_control_form(handle: CollectorHandle, http: httpx.Client) -> None:
    form = {"latency_ms": "", "fail_rate": "0.25", "rate_429": "0.0", "seed": ""}
    response = http.post("/control", data=form)
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert handle.control()["fail_rate"] == 0.25
    for bad, named in (
        ({"fail_rate": "abc"}, "abc"),
        ({"colour": "1"}, "colour"),
        ({"fail_rate": "0.9", "rate_429": "0.9"}, "at most 1"),
    ):
        response = http.post("/control", data=bad)
        assert response.status_code == 400 and named in response.text
    typo = http.post("/control", data={"failrate": "1"})
    assert typo.status_code == 400
    assert "unknown fault setting 'failrate'; did you mean 'fail_rate'?" in html.unescape(typo.text)
    evil = http.post("/control", data={"fail_rate": "1"}, headers={"origin": "http://evil.test"})
    assert evil.status_code == 403
    assert handle.control()["fail_rate"] == 0.25  # unchanged by the refused forms
    assert http.post("/control", json={"fail_rate": 0}).json()["fail_rate"] == 0


def test_datafile_option_refuses_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": "4", "experiments": "nope"}))
    result = CliRunner().invoke(collector_command, ["--port", "0", "--datafile", str(bad)])
    assert result.exit_code == 2
    assert "--datafile" in result.output and "bad.json" in result.output


# -- the SRM arithmetic ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("statistic", "dof", "p"),
    [
        (3.841458820694124, 1, 0.05),
        (6.6348966010212145, 1, 0.01),
        (5.991464547107979, 2, 0.05),
        (7.814727903251178, 3, 0.05),
        (13.276704135987622, 4, 0.01),
        (18.307038053275146, 10, 0.05),
        (2.3420, 5, 0.8),  # below a + 1: the series branch
        (149.44925277903887, 100, 0.001),
    ],
)
def test_chi_square_p_matches_table_quantiles(statistic: float, dof: int, p: float) -> None:
    assert chi_square_p(statistic, dof) == pytest.approx(p, rel=2e-3)


def test_chi_square_p_matches_closed_form_for_even_dof() -> None:
    for dof in (2, 4, 6, 20):
        k = dof // 2
        for x in (0.01, 0.5, 1.0, 3.0, 7.5, 20.0, 60.0):
            closed = math.exp(-x / 2) * sum((x / 2) ** i / math.factorial(i) for i in range(k))
            assert chi_square_p(x, dof) == pytest.approx(closed, rel=1e-9, abs=1e-300)
    for x in (0.05, 1.0, 2.9, 4.0, 11.0, 40.0):  # dof 3: both branches (x/2 < 2.5 and above)
        closed = math.erfc(math.sqrt(x / 2)) + math.sqrt(2 * x / math.pi) * math.exp(-x / 2)
        assert chi_square_p(x, 3) == pytest.approx(closed, rel=1e-9)
    assert chi_square_p(0.0, 3) == 1.0 and chi_square_p(math.inf, 3) == 0.0


def test_srm_check() -> None:
    weights = {"a": 5000, "b": 5000}
    balanced = srm_check({"a": 500, "b": 500}, weights)
    assert balanced is not None and balanced.p_value == 1.0 and not balanced.mismatch
    skewed = srm_check({"a": 600, "b": 400}, weights)
    assert skewed is not None and skewed.mismatch and skewed.p_value < SRM_ALPHA
    assert skewed.statistic == pytest.approx(40.0)
    stray = srm_check({"a": 5, "b": 5, "c": 1}, weights)
    assert stray is not None and stray.p_value == 0.0
    assert srm_check({}, weights) is None and srm_check({"a": 3}, {"a": 10000}) is None
    thirds = {"a": 3334, "b": 3333, "c": 3333}
    small = srm_check({"a": 14}, thirds)  # p < 0.001, but 4.67 expected per variation
    assert small is not None and small.too_few and small.p_value < SRM_ALPHA
    assert not small.mismatch
    assert srm_check({"a": 1, "c": 1}, weights).mismatch  # type: ignore[union-attr]


def test_allocation_weights_of_the_example_datafile() -> None:
    config = load_config(example_datafile())
    three = allocation_weights(config.experiments[EXPERIMENT])
    assert sorted(three.values()) == [3333, 3333, 3334]
    partial = allocation_weights(config.experiments["pricing_page_layout"])
    assert sorted(partial.values()) == [4500, 4500]  # 10% not allocated: left out


def test_feed_flags_a_sample_ratio_mismatch(http: httpx.Client) -> None:
    """pricing_page_layout allocates 45% / 45% (10% unallocated): 60 vs 20 is a mismatch."""
    visitors = []
    for i in range(81):
        variation = None if i == 80 else ("21000026808" if i % 4 else "21000027925")
        decision = {"campaign_id": "1", "experiment_id": "21000024574", "variation_id": variation}
        event = {"entity_id": "1", "uuid": f"s{i}", "key": "campaign_activated", "timestamp": 1}
        visitors.append(
            {"visitor_id": f"v{i}", "snapshots": [{"decisions": [decision], "events": [event]}]}
        )
    assert (
        http.post("/v1/events", json={"account_id": "1", "visitors": visitors}).status_code == 204
    )
    summary = http.get("/dashboard/feed").json()["experiments"][0]
    assert summary["key"] == "pricing_page_layout" and summary["impressions"] == 80
    assert summary["no_variation"] == 1  # left out of the split
    assert [v["key"] for v in summary["variations"].values()] == ["control", "treatment"]
    assert [v["expected_share"] for v in summary["variations"].values()] == [0.5, 0.5]
    srm = summary["srm"]
    assert srm["mismatch"] and srm["chi_square"] == pytest.approx(20.0) and srm["dof"] == 1
    assert srm["p_value"] == pytest.approx(math.erfc(math.sqrt(10.0)), rel=1e-12)
    page = http.get("/").text
    assert "SRM MISMATCH" in page and "srm-bad" in page


def test_the_datafile_can_come_by_sdk_key() -> None:
    import subprocess
    import sys

    from xpevents.testing import run_collector

    from servers import datafile_server

    with datafile_server() as server:
        server.publish("DASH", json.loads(example_datafile()))
        with run_collector(sdk_key="DASH", datafile_url_template=server.template) as handle:
            page = httpx.get(handle.base_url + "/", trust_env=False).text
            assert "datafile: revision 241" in page
        result = subprocess.run(
            [sys.executable, "-m", "xpevents", "collector", "--port", "0", "--sdk-key", "NOPE",
             "--datafile-url-template", server.template],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2 and "HTTP 404" in result.stderr
