"""examples/php/RedisSpoolEventDispatcher.php + ``xpevents forward``: PHP with no network hop.

PHP (php-cli with phpredis) appends to a Redis stream in the spool's record format;
Python reads it (RedisSpool) and ``xpevents forward`` delivers it into a real
collector. The record format is checked from both sides, and a Redis restart in the
middle of a run loses nothing that dispatchEvent returned from.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from spool_redis_server import free_port
from test_relay import FAST, wait_for_uuids
from xpevents.relay.testing import run_relay
from xpevents.spool.redis import RedisSpool
from xpevents.spool.redis.schema import digest
from xpevents.testing import CollectorHandle

PHP = shutil.which("php")
ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "examples" / "php" / "dispatch_events.php"
REDIS = "redis://127.0.0.1:6379/0"


def _has_phpredis() -> bool:
    if PHP is None:
        return False
    modules = subprocess.run([PHP, "-m"], capture_output=True, text=True, check=False).stdout
    return "redis" in modules.split()


pytestmark = pytest.mark.skipif(
    not _has_phpredis(), reason="php with phpredis is not installed (CI: php-cli php-redis)"
)


def run_php(*args: str) -> dict[str, Any]:
    assert PHP is not None
    done = subprocess.run(
        [PHP, str(SCRIPT), "--mode=redis", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    result["stderr"] = done.stderr
    return result


def stream_name() -> str:
    return f"t-php-{uuidlib.uuid4().hex[:12]}"


@pytest.fixture
def stream() -> Iterator[str]:
    name = stream_name()
    yield name
    client = redis.Redis.from_url(REDIS)
    for suffix in ("", ":envelopes", ":meta", ":retry", ":retry:age", ":retry:data", ":dead"):
        client.delete(name + suffix)
    client.close()


@contextmanager
def forward(spool: str, collector: CollectorHandle) -> Iterator[subprocess.Popen[str]]:
    """``xpevents forward`` from ``spool`` into ``collector``, stopped by SIGTERM after."""
    with forward_to(spool, collector.events_url, collector.eu_events_url) as process:
        yield process


@contextmanager
def forward_to(spool: str, upstream: str, upstream_eu: str) -> Iterator[subprocess.Popen[str]]:
    """``xpevents forward`` from ``spool`` to those upstreams, once it says it runs."""
    command = [
        sys.executable,
        "-m",
        "xpevents",
        "forward",
        f"--spool={spool}",
        f"--upstream={upstream}",
        f"--upstream-eu={upstream_eu}",
        "--flush-interval=0.05",
        "--backoff-base=0.05",
        "--backoff-max=0.5",
        "--lease=2",
        "--timeout=1",
        "--shutdown-timeout=3",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("xpevents forward running on"), process.stderr.read()  # type: ignore[union-attr]
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_php_records_are_the_ones_redis_spool_writes_and_reads(stream: str) -> None:
    result = run_php(
        f"--redis={REDIS}?stream={stream}",
        "--original=https://logx.optimizely.com/v1/events",
        "--relay=http://127.0.0.1:9",
        "--fallback=none",
        "--count=3",
    )
    assert result["outcomes"] == {"redis": 3}
    client = redis.Redis.from_url(REDIS)
    php_entries = client.xrange(stream)
    envelopes = client.hgetall(f"{stream}:envelopes")
    meta = client.hgetall(f"{stream}:meta")
    assert len(php_entries) == 3 and len(envelopes) == 1
    ((key, envelope),) = envelopes.items()
    assert key == digest(envelope)  # PHP's envelope key is xpevents' own digest
    assert envelope.startswith(b"Bhttps://logx.optimizely.com/v1/events\n")
    assert envelope.endswith(b'"visitors":[]}')
    visitors = [fields[b"v"] for _, fields in php_entries]
    assert int(meta[b"bytes"]) == sum(map(len, visitors))
    assert meta[b"format"] == b"xpevents-spool" and meta[b"schema_version"] == b"1"

    # The same records written by Python: the same fields, the same values but the time.
    twin = stream_name()
    spool = RedisSpool.from_url(f"{REDIS}?stream={twin}")
    try:
        spool.append([(envelope, v) for v in visitors], now=time.time())
        py_entries = client.xrange(twin)
        assert client.hgetall(f"{twin}:envelopes") == envelopes
        assert client.hget(f"{twin}:meta", "bytes") == meta[b"bytes"]
        for (_, php), (_, py) in zip(php_entries, py_entries, strict=True):
            assert list(php) == list(py)
            assert {k: v for k, v in php.items() if k != b"t"} == {
                k: v for k, v in py.items() if k != b"t"
            }
            assert abs(float(php[b"t"]) - float(py[b"t"])) < 60
    finally:
        spool.close()
        for suffix in ("", ":envelopes", ":meta"):
            client.delete(twin + suffix)

    # And Python reads what PHP wrote.
    reader = RedisSpool.from_url(f"{REDIS}?stream={stream}")
    try:
        claim = reader.claim(max_records=10, max_bytes=1 << 20, lease=5, now=time.time())
        assert [r.envelope for r in claim] == [envelope] * 3
        assert [r.visitor for r in claim] == visitors
        uuids = [json.loads(v)["snapshots"][0]["events"][0]["uuid"] for v in visitors]
        assert uuids == [e["uuid"] for e in result["events"]]
    finally:
        reader.close()
    client.close()


def test_php_redis_path_through_xpevents_forward_into_the_collector(
    stream: str, collector: CollectorHandle
) -> None:
    spool = f"{REDIS}?stream={stream}"
    result = run_php(
        f"--redis={spool}",
        f"--original={collector.events_url}",
        "--relay=http://127.0.0.1:9",
        "--fallback=none",
        "--count=30",
    )
    assert result["outcomes"] == {"redis": 30}
    client = redis.Redis.from_url(REDIS)
    written = {bytes(f[b"v"]) for _, f in client.xrange(stream)}
    client.close()
    with forward(spool, collector):
        assert not wait_for_uuids(collector, {e["uuid"] for e in result["events"]}, timeout=20)
    rows = httpx.get(collector.base_url + "/events?raw=1&limit=1000").json()
    assert {row["visitor"].encode() for row in rows} == written  # byte for byte


# -- a Redis restart in the middle of a run -------------------------------------------


@contextmanager
def durable_redis(directory: Path) -> Iterator[tuple[str, Any]]:
    port = free_port()
    binary = shutil.which("redis-server")
    assert binary is not None
    args = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--appendonly", "yes", "--appendfsync", "always", "--save", "",
    ]  # fmt: skip
    state: dict[str, subprocess.Popen[bytes]] = {}

    def start() -> None:
        state["p"] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        client.close()

    def kill() -> None:
        state["p"].kill()
        state["p"].wait(10)

    start()
    try:
        yield f"redis://127.0.0.1:{port}/0", (kill, start)
    finally:
        kill()


def test_a_redis_restart_mid_run_loses_nothing_dispatch_event_returned_from(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    with (
        durable_redis(tmp_path) as (url, (kill, start)),
        run_relay(
            spool=f"sqlite:///{tmp_path}/relay.db",
            upstream=collector.events_url,
            upstream_eu=collector.eu_events_url,
            **FAST,
        ) as relay,
    ):
        spool = f"{url}?stream=php"
        with forward(spool, collector):
            php = subprocess.Popen(
                [
                    PHP or "php",
                    str(SCRIPT),
                    "--mode=redis",
                    f"--redis={spool}",
                    f"--relay={relay.base_url}",
                    f"--original={collector.events_url}",
                    "--count=150",
                    "--interval-ms=10",
                    "--timeout-ms=2000",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(0.5)
            kill()  # SIGKILL: what was acknowledged is in the append-only file
            time.sleep(0.5)
            start()
            out, err = php.communicate(timeout=120)
            assert php.returncode == 0, err
            result = json.loads(out)
            outcomes = result["outcomes"]
            assert outcomes.get("redis", 0) > 0 and sum(outcomes.values()) == 150
            assert set(outcomes) <= {"redis", "fallback:relay", "fallback:fallback"}, outcomes
            expected = {e["uuid"] for e in result["events"]}
            assert not wait_for_uuids(collector, expected, timeout=30)
    assert outcomes.get("fallback:relay", 0) > 0, (outcomes, err)  # Redis was down a while
