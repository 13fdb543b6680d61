"""The collector never answers 5xx to a client's mistake (issue 15, items 1 and 3)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from xpevents.collector import Collector, CollectorServer

DEEP_OBJECTS = b'{"visitors": [' + b'{"a":' * 1500 + b"1" + b"}" * 1500 + b"]}"
DEEP_IN_TAGS = (
    b'{"account_id": "1", "visitors": [{"visitor_id": "v", "snapshots": [{"events": [{'
    b'"entity_id": "e", "uuid": "u", "key": "k", "timestamp": 1, "tags": '
    + b'{"a":' * 1100
    + b"1"
    + b"}" * 1100
    + b"}]}]}]}"
)
BAD_UTF8_VISITOR = (
    b'{"account_id": "1", "visitors": [{"visitor_id": "v", "x\xff": 1, "snapshots": [{"events":'
    b' [{"entity_id": "e", "uuid": "u", "key": "k", "timestamp": 1}]}]}]}'
)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    collector = Collector()
    with (
        CollectorServer(collector, port=0) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=10) as client,
    ):
        yield client
    collector.close()


@pytest.mark.parametrize(
    ("body", "path", "reason"),
    [
        (DEEP_OBJECTS, "$", "too_deep"),
        (DEEP_IN_TAGS, "$", "too_deep"),
        (BAD_UTF8_VISITOR, "$.visitors[0]", "invalid_string"),
        (b'{"visitors": [{"v": "\\ud800"}]}', "$.visitors[0]", "invalid_string"),
        (b'{"visitors": [7]}', "$.visitors[0]", "visitor_not_object"),
    ],
)
def test_unforwardable_bodies_are_400_with_a_reason_and_counted(
    http: httpx.Client, body: bytes, path: str, reason: str
) -> None:
    before = http.get("/stats").json()["rejected_by_reason"].get(reason, 0)
    response = http.post("/v1/events", content=body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert (answer["path"], answer["reason"]) == (path, reason), answer
    assert http.get("/stats").json()["rejected_by_reason"][reason] == before + 1


@pytest.mark.parametrize(
    "query",
    [
        "limit=99999999999999999999",
        "offset=99999999999999999999",
        "limit=100001",
        "limit=-1",
        "limit=1e3",
        "limit=" + "9" * 5000,
        "offset=x",
    ],
)
def test_events_query_out_of_range_is_400_with_a_message(http: httpx.Client, query: str) -> None:
    response = http.get("/events?" + query)
    assert response.status_code == 400
    assert "must be an integer from 0 to" in response.json()["error"]


def test_events_query_at_its_bounds_is_fine(http: httpx.Client) -> None:
    assert http.get("/events?limit=100000&offset=0").status_code == 200
    assert http.get(f"/events?offset={2**62}").json() == []


def test_deeply_nested_control_is_400(http: httpx.Client) -> None:
    response = http.post("/control", content=b'{"latency_ms":' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert response.status_code == 400


def test_lenient_by_default_needs_only_uuid_and_timestamp(http: httpx.Client) -> None:
    event = b'{"entity_id": null, "key": 5, "revenue": 1.5, "tags": {"x": null}%s}'
    body = (
        b'{"account_id": 7, "visitors": [{"visitor_id": null, "snapshots": [{"decisions": '
        b'[{"campaign_id": null, "experiment_id": 3, "variation_id": null}], "events": ['
        + event % b', "uuid": "len-1", "timestamp": 1700000000000'
        + b"]}]}]}"
    )
    assert http.post("/v1/events", content=body).status_code == 204
    row = next(r for r in http.get("/events").json() if r["uuid"] == "len-1")
    assert (row["entity_id"], row["key"], row["account_id"], row["revenue"]) == ("", "5", "7", 1.5)
    assert row["visitor"]["visitor_id"] is None
    for missing, path in ((b', "timestamp": 1', "uuid"), (b', "uuid": "u"', "timestamp")):
        bad = body.replace(
            event % b', "uuid": "len-1", "timestamp": 1700000000000', event % missing
        )
        response = http.post("/v1/events", content=bad)
        assert response.status_code == 400
        assert response.json()["reason"] == "invalid_event"
        assert path in response.json()["error"] or response.json()["path"].endswith("events[0]")
