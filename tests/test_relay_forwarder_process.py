"""``xpevents relay --forwarder process``: a supervised child forwards from the spool.

Real relay and collector processes on loopback, a SQLite spool in ``tmp_path``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_relay import FAST, payload_body, stored_uuids, wait_for_uuids
from xpevents.relay.testing import RelayHandle, run_relay
from xpevents.testing import CollectorHandle


def process_relay(collector: CollectorHandle, spool: str, **options: Any) -> Any:
    return run_relay(
        spool=spool,
        upstream=collector.events_url,
        upstream_eu=collector.eu_events_url,
        forwarder="process",
        **{**FAST, **options},
    )


def post(relay: RelayHandle, prefix: str, n: int, per_request: int = 5) -> list[str]:
    """Post ``n`` visitors in requests of ``per_request``; their uuids, all answered 204."""
    sent: list[str] = []
    for start in range(0, n, per_request):
        uuids = [f"{prefix}-{i}" for i in range(start, min(n, start + per_request))]
        response = relay.http.post("/v1/events", content=payload_body(uuids))
        assert response.status_code == 204, response.text
        sent += uuids
    return sent


def child_pid(relay: RelayHandle) -> int:
    forwarder = relay.readyz().json()["forwarder"]
    assert forwarder["mode"] == "process"
    pid = forwarder["pid"]
    assert isinstance(pid, int)
    return pid


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def gone(pid: int) -> bool:
    """The process exited (a zombie not yet reaped by init counts as exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def test_events_reach_the_upstream_through_the_child(
    collector_factory: Callable[..., CollectorHandle], tmp_path: Path
) -> None:
    collector = collector_factory()
    with process_relay(collector, f"sqlite:///{tmp_path}/relay.db") as relay:
        pid = child_pid(relay)
        assert parent_of(pid) == relay.pid
        assert relay.readyz().status_code == 200
        sent = post(relay, "a", 40)
        assert not wait_for_uuids(collector, set(sent), timeout=60)
        # The child's counters, served by the relay from its report (every 0.1 s).
        delivered = "xpevents_relay_delivered_visitors_total"
        assert wait_until(lambda: relay.metrics()[delivered] == 40, timeout=10)
        metrics = relay.metrics()
        assert metrics['xpevents_relay_upstream_request_seconds_count{outcome="2xx",region="us"}']
    assert collector.stats()["duplicates"] == 0


def test_a_killed_child_is_restarted_and_nothing_is_lost(
    collector_factory: Callable[..., CollectorHandle], tmp_path: Path
) -> None:
    collector = collector_factory(latency_ms=200)  # requests in flight at the kill
    with process_relay(collector, f"sqlite:///{tmp_path}/relay.db", batch_size=5) as relay:
        first = child_pid(relay)
        before = post(relay, "before", 50)
        os.kill(first, signal.SIGKILL)
        # /readyz says 503 until a new child runs (backoff 0.5 s, then its start-up);
        # ingest goes on meanwhile.
        assert wait_until(lambda: relay.readyz().status_code == 503, timeout=10)
        problems = relay.readyz().json()["problems"]
        during = post(relay, "during", 20)
        assert any("forwarder process not running" in p for p in problems), problems
        assert wait_until(lambda: relay.readyz().status_code == 200, timeout=60)
        ready = relay.readyz().json()["forwarder"]
        assert ready["restarts"] == 1 and ready["pid"] != first
        assert ready["last_exit"] == -signal.SIGKILL
        after = post(relay, "after", 20)
        sent = before + during + after
        assert not wait_for_uuids(collector, set(sent), timeout=60)
        assert stored_uuids(collector) == set(sent)  # nothing else arrived
    stats = collector.stats()
    assert stats["unique_events"] == len(sent)
    # At least once: only visitors the killed child may have sent (claimed before the
    # kill) can arrive twice, when their lease expires; each of them at most once more.
    assert stats["duplicates"] <= len(before)


def test_sigterm_stops_the_relay_and_the_child_keeping_the_rest(
    collector_factory: Callable[..., CollectorHandle], tmp_path: Path
) -> None:
    down = collector_factory(fail_rate=1.0)  # every request answered 500/503
    spool = f"sqlite:///{tmp_path}/relay.db"
    with process_relay(down, spool, shutdown_timeout=1, log_level="info") as relay:
        pid = child_pid(relay)
        sent = post(relay, "kept", 30)
        started = time.monotonic()
        assert relay.terminate() == 0
        assert time.monotonic() - started < 30
        assert wait_until(lambda: gone(pid), timeout=10)
        stderr = relay.stderr_text()
        assert f"forwarder process {pid} stopped (exit code 0)" in stderr
    assert down.stats()["unique_events"] == 0
    # Every visitor answered 204 stayed in the spool: the next start forwards them all.
    down.control(fail_rate=0.0)
    with process_relay(down, spool):
        assert not wait_for_uuids(down, set(sent), timeout=60)


RELAY_ON_MEMORY = [sys.executable, "-m", "xpevents.relay", "--port", "0", "--spool", "memory://"]
RELAY_ON_MEMORY += ["--upstream-base", "http://127.0.0.1:9"]  # never contacted


def test_process_with_a_memory_spool_is_a_usage_error() -> None:
    result = subprocess.run(
        [*RELAY_ON_MEMORY, "--forwarder", "process"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "XPEVENTS_RELAY_FORWARDER"},
    )
    assert result.returncode == 2, result.stderr
    assert "--forwarder process needs a durable --spool" in result.stderr
    assert "use --forwarder thread (or auto)" in result.stderr


def test_process_mode_from_the_environment_is_refused_the_same_way() -> None:
    result = subprocess.run(
        RELAY_ON_MEMORY,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XPEVENTS_RELAY_FORWARDER": "process"},
    )
    assert result.returncode == 2, result.stderr
    assert "--forwarder process needs a durable --spool" in result.stderr


def test_by_default_a_durable_spool_forwards_from_a_child_and_memory_from_threads(
    collector_factory: Callable[..., CollectorHandle], tmp_path: Path
) -> None:
    """``--forwarder auto`` is the default: ingest does not share a GIL with the
    senders whenever the spool can be read by another process (measured: 14-40% more
    requests/s at 10 clients, docs/relay.md)."""
    collector = collector_factory()
    urls = {"upstream": collector.events_url, "upstream_eu": collector.eu_events_url}
    with run_relay(spool=f"sqlite:///{tmp_path}/relay.db", **urls, **FAST) as relay:
        pid = child_pid(relay)
        assert parent_of(pid) == relay.pid
        sent = post(relay, "d", 10)
        assert not wait_for_uuids(collector, set(sent), timeout=60)
    with run_relay(spool="memory://", **urls, **FAST) as relay:
        assert relay.readyz().json()["forwarder"] == {"mode": "thread"}


def test_the_child_copies_the_spools_log_into_its_database_file(tmp_path: Path) -> None:
    """The child checkpoints the SQLite spool from a thread of its own (WalBackfill):
    with neither process allowed to checkpoint on commit, the database file still
    receives what the relay spooled. The upstream is a closed port: records stay."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1/events"
    path = tmp_path / "relay.db"
    with run_relay(
        spool=f"sqlite:///{path}?checkpoint_pages=1000000",
        upstream=dead,
        upstream_eu=dead,
        forwarder="process",
        **FAST,
    ) as relay:
        child_pid(relay)
        before = path.stat().st_size
        post(relay, "b", 1_000, per_request=50)
        assert Path(f"{path}-wal").stat().st_size > 200_000
        grew = wait_until(lambda: path.stat().st_size > before + 200_000, timeout=30)
        assert grew, (before, path.stat().st_size)
