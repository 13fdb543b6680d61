"""BatchDispatcher across fork(), under gunicorn --preload, and at interpreter exit."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest

from xpevents import LogEvent
from xpevents.dispatch.batch import BatchDispatcher
from xpevents.testing import CollectorHandle

URL = "https://logx.optimizely.com/v1/events"

EVENT_CODE = textwrap.dedent(
    """
    import time, uuid
    from xpevents import LogEvent

    def make_event(name):
        return LogEvent(
            "https://logx.optimizely.com/v1/events",
            {
                "account_id": "1", "project_id": "2", "revision": "3",
                "client_name": "python-sdk", "client_version": "5.7.0",
                "anonymize_ip": False, "enrich_decisions": True,
                "visitors": [{
                    "visitor_id": name, "attributes": [],
                    "snapshots": [{
                        "decisions": [{"campaign_id": "1", "experiment_id": "2",
                                       "variation_id": "3"}],
                        "events": [{"entity_id": "1", "uuid": str(uuid.uuid4()),
                                    "timestamp": int(time.time() * 1000),
                                    "key": "campaign_activated"}],
                    }],
                }],
            },
        )
    """
)
_ns: dict[str, object] = {}
exec(EVENT_CODE, _ns)
make_event = _ns["make_event"]


def _visitor_ids(collector: CollectorHandle) -> list[str]:
    return [e["visitor_id"] for e in collector.events(limit=10_000)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_restarts_sender_and_never_resends_parent_events(
    collector: CollectorHandle,
) -> None:
    bd = BatchDispatcher(endpoint=collector.base_url, flush_interval=60, batch_size=10_000)
    for i in range(100):
        bd.dispatch_event(make_event(f"parent-{i}"))  # type: ignore[operator]
    assert bd.stats().queue_depth == 100
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            assert bd.stats().queue_depth == 0  # starts empty
            for i in range(50):
                bd.dispatch_event(make_event(f"child-{i}"))  # type: ignore[operator]
            outcome = bd.flush(10)
            stats = bd.stats()
            code = 0 if outcome.pending == 0 and stats.delivered == 50 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert bd.flush(10).pending == 0
    bd.close()
    stats = collector.wait_for(unique_events=150, timeout=10)
    assert stats["unique_events"] == 150 and stats["duplicates"] == 0
    ids = _visitor_ids(collector)
    assert sum(v.startswith("child-") for v in ids) == 50
    assert sum(v.startswith("parent-") for v in ids) == 100


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


@pytest.mark.skipif(
    shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None,
    reason="gunicorn not installed",
)
def test_gunicorn_preload_workers_deliver_every_event(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    app = tmp_path / "batchapp.py"
    app.write_text(
        EVENT_CODE
        + textwrap.dedent(
            f"""
            import os
            from xpevents.dispatch.batch import BatchDispatcher

            dispatcher = BatchDispatcher(endpoint={collector.base_url!r}, flush_interval=0.05)

            def app(environ, start_response):
                name = environ.get("QUERY_STRING", "anon")
                dispatcher.dispatch_event(make_event(name))
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [str(os.getpid()).encode()]
            """
        )
    )
    port = _free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    process = subprocess.Popen(
        [gunicorn, "--preload", "-w", "2", "-b", f"127.0.0.1:{port}", "batchapp:app"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    try:
        pids: set[str] = set()
        with httpx.Client(trust_env=False, timeout=5) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    http.get(f"http://127.0.0.1:{port}/?warmup")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            for i in range(300):
                # a new connection per request spreads them over both workers
                response = httpx.get(f"http://127.0.0.1:{port}/?req-{i}", trust_env=False)
                pids.add(response.text)
        stats = collector.wait_for(unique_events=301, timeout=20)
        assert stats["unique_events"] == 301
        assert stats["duplicates"] == 0
        assert len(pids) == 2, pids  # both workers served and delivered
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_atexit_flushes_without_close(collector: CollectorHandle, tmp_path: Path) -> None:
    script = tmp_path / "exits.py"
    script.write_text(
        EVENT_CODE
        + textwrap.dedent(
            f"""
            from xpevents.dispatch.batch import BatchDispatcher

            dispatcher = BatchDispatcher(endpoint={collector.base_url!r}, flush_interval=60,
                                         batch_size=100_000)
            for i in range(500):
                dispatcher.dispatch_event(make_event(f"exit-{{i}}"))
            # no close(), no flush(): the atexit hook must deliver them
            """
        )
    )
    result = subprocess.run([sys.executable, str(script)], timeout=30, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert collector.stats()["unique_events"] == 500


def test_atexit_can_be_disabled(collector: CollectorHandle, tmp_path: Path) -> None:
    script = tmp_path / "exits.py"
    script.write_text(
        EVENT_CODE
        + textwrap.dedent(
            f"""
            from xpevents.dispatch.batch import BatchDispatcher

            dispatcher = BatchDispatcher(endpoint={collector.base_url!r}, flush_interval=60,
                                         batch_size=100_000, atexit_timeout=None)
            for i in range(50):
                dispatcher.dispatch_event(make_event(f"exit-{{i}}"))
            """
        )
    )
    result = subprocess.run([sys.executable, str(script)], timeout=30, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert collector.stats()["unique_events"] == 0


def test_event_helper_is_valid() -> None:
    event = make_event("x")  # type: ignore[operator]
    assert isinstance(event, LogEvent) and uuid.UUID(
        event.params["visitors"][0]["snapshots"][0]["events"][0]["uuid"]
    )
    assert event.url == URL


@pytest.mark.skipif(sys.platform != "linux", reason="calls glibc's fork() through ctypes")
@pytest.mark.parametrize("how", ["os.fork", "libc fork"])
def test_fork_mark_reads_zero_in_any_child(how: str) -> None:
    """The uuid generator's fork guard: 1 here, 0 in a child however it was forked
    (uWSGI forks from C, without Python's hooks), 1 again once re-armed."""
    import ctypes

    from xpevents._internal.forking import new_fork_mark

    mark = new_fork_mark()
    assert mark[0] == 1
    read, write = os.pipe()
    pid = os.fork() if how == "os.fork" else ctypes.CDLL(None).fork()
    if pid == 0:
        try:
            seen = mark[0]
            mark[0] = 1
            os.write(write, bytes([seen, mark[0]]))
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 2)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == bytes([0, 1])
    assert mark[0] == 1
