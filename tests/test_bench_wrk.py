"""bench/_wrk.py and bench/collector.py: the load generator of the services' benchmarks.

A figure is only as honest as its generator: every request's body must be distinct
(the collector de-duplicates events) and the collector must have stored every visitor
of every request wrk saw answered. Runs wrk for real against a real collector.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _http_floor, _wrk, collector  # noqa: E402  (after the path insert)


def test_a_template_must_say_where_requests_differ() -> None:
    with pytest.raises(ValueError, match="RRRRRRRRRR"):
        _wrk.distinct_bodies_script('{"visitors": []}')


def test_the_body_template_is_an_sdk_payload_with_one_placeholder_per_visitor() -> None:
    template = collector.body_template(3)
    payload = json.loads(template)
    uuids = [v["snapshots"][0]["events"][0]["uuid"] for v in payload["visitors"]]
    assert uuids == [f"{_wrk.PLACEHOLDER}-{i:04d}" for i in range(3)]
    assert template.count(_wrk.PLACEHOLDER) == 3


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (.ci/run installs it)"
)
@pytest.mark.parametrize("visitors", [1, 20])
def test_wrk_sends_distinct_bodies_and_the_collector_stores_them_all(
    visitors: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collector, "SECONDS", 1.0)
    monkeypatch.setattr(collector, "CLIENTS", 4)
    row = collector._row("memory", visitors, None)
    assert row["answered_requests"] > 0
    assert row["non_2xx"] == 0
    # every visitor of every answered request is a distinct stored event
    assert row["stored_events"] >= row["answered_requests"] * visitors
    assert row["all_stored"] is True
    assert 0 < row["generator_cpu_share"] < 2


def _read_answers(sock: socket.socket, count: int) -> bytes:
    answer = _http_floor._ANSWER
    received = b""
    while len(received) < count * len(answer):
        chunk = sock.recv(65536)
        assert chunk, "the floor server closed the connection"
        received += chunk
    return received


def test_the_floor_server_answers_split_and_pipelined_requests() -> None:
    """bench/_http_floor.py: the relay table's floor rows; a request split across
    reads waits for its body, two pipelined requests get two answers."""
    body = b'{"visitors":[]}'
    request = (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with _http_floor.run_floor() as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(request[:-5])
            sock.settimeout(0.2)
            with pytest.raises(TimeoutError):
                sock.recv(1)  # the body is not complete: no answer yet
            sock.settimeout(10)
            sock.sendall(request[-5:] + request * 2)
            assert _read_answers(sock, 3) == _http_floor._ANSWER * 3


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (.ci/run installs it)"
)
def test_wrk_against_the_floor_server_gets_only_204s() -> None:
    from bench.relay import BODY

    with _http_floor.run_floor() as base:
        result = _wrk.run_wrk(f"{base}/v1/events", 4, 1, _wrk.fixed_body_script(BODY))
    assert result["requests"] > 0
    assert result["non_2xx"] == 0
    assert result["socket_errors"] == 0
