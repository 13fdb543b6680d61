"""xpevents.integrations.starlette.lifespan under a real uvicorn, and the warning without it."""

from __future__ import annotations

import gc
import logging
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from xpevents import AsyncDispatcher, ConfigError, LogEvent
from xpevents.integrations.starlette import lifespan
from xpevents.testing import CollectorHandle

APP = textwrap.dedent(
    """
    import sys
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from xpevents import AsyncDispatcher, Client
    from xpevents.example import example_datafile
    from xpevents.integrations.starlette import lifespan

    endpoint, use_lifespan = sys.argv[1], sys.argv[2] == "yes"
    # nothing is sent before shutdown unless something flushes: a long interval, big batches
    dispatcher = AsyncDispatcher(endpoint=endpoint, flush_interval=60.0, batch_size=10_000)
    client = Client(example_datafile(), event_dispatcher=dispatcher)

    async def buy(request):
        user = request.query_params["user"]
        client.activate("checkout_button_color", user)
        client.track("purchase", user, event_tags={"revenue": 100})
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/buy", buy)],
        lifespan=lifespan(dispatcher, client) if use_lifespan else None,
    )

    if __name__ == "__main__":
        import uvicorn
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve(
    tmp_path: Path,
    collector: CollectorHandle,
    use_lifespan: bool,
    users: int,
    stop: signal.Signals = signal.SIGTERM,
) -> str:
    script = tmp_path / "app.py"
    script.write_text(APP)
    port = _free_port()
    args = [collector.events_url, "yes" if use_lifespan else "no", str(port)]
    proc = subprocess.Popen([sys.executable, str(script), *args], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as http:
                    for i in range(users):
                        assert http.get("/buy", params={"user": f"u{i}"}).text == "ok"
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the app did not start"
                time.sleep(0.1)
        proc.send_signal(stop)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 1, -stop), stderr
    return stderr


def test_the_lifespan_flushes_everything_at_shutdown(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    stderr = _serve(tmp_path, collector, use_lifespan=True, users=7)
    assert collector.wait_for(unique_events=14, timeout=10)["unique_events"] == 14
    assert "lost" not in stderr


def test_without_a_lifespan_the_loss_is_said_with_the_count_and_the_fix(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    # Ctrl-C: uvicorn re-raises SIGINT after its shutdown, the interpreter exits normally.
    # (After SIGTERM it re-raises SIGTERM, which ends the process with no Python code run
    # at all: only a lifespan can flush then; docs/asyncio.md says so.)
    stderr = _serve(tmp_path, collector, use_lifespan=False, users=3, stop=signal.SIGINT)
    assert "with 6 unsent visitor(s) in memory, never closed: they are lost" in stderr
    assert "xpevents.integrations.starlette.lifespan(dispatcher)" in stderr
    assert collector.stats()["unique_events"] == 0


def _event(user: str) -> LogEvent:
    visitor = {
        "visitor_id": user,
        "attributes": [],
        "snapshots": [
            {
                "decisions": [],
                "events": [{"key": "k", "timestamp": 1, "uuid": user, "entity_id": "1"}],
            }
        ],
    }
    return LogEvent("http://127.0.0.1:9/v1/events", {"account_id": "1", "visitors": [visitor]})


def test_a_garbage_collected_dispatcher_says_what_it_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = AsyncDispatcher()
    for i in range(4):
        dispatcher.dispatch_event(_event(f"u{i}"))  # no loop: queued, never sent
    with caplog.at_level(logging.WARNING, logger="xpevents.dispatch"):
        del dispatcher
        gc.collect()
    (record,) = [r for r in caplog.records if "garbage-collected" in r.getMessage()]
    assert "4 unsent visitor(s)" in record.getMessage()


def test_a_closed_or_empty_dispatcher_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="xpevents.dispatch"):
        empty = AsyncDispatcher()
        del empty
        gc.collect()
    assert not [r for r in caplog.records if "unsent" in r.getMessage()]


def test_lifespan_validates_what_it_is_given() -> None:
    with pytest.raises(ConfigError, match="expected an AsyncDispatcher"):
        lifespan(object())
    with pytest.raises(ConfigError, match="flush_timeout"):
        lifespan(flush_timeout=0)
