"""A total deadline per upstream request: an answer trickled 1 byte at a time cannot hold
a sender past its ``timeout`` (issue 15, item 11).

Each driver (BatchDispatcher, AsyncDispatcher, DefaultEventDispatcher, the relay's
forwarder) talks to a real loopback server that sends a valid answer one byte every
0.2 s for a minute: every read gets a byte well within the per-read timeout, so only a
total deadline ends the request. The bounds are gross (10x the 1 s timeout).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from hostile import HostileServer, hostile_server
from xpevents import AsyncDispatcher, BatchDispatcher, DefaultEventDispatcher, RetryPolicy
from xpevents.dispatch.deadline import deadline, deadline_transport
from xpevents.relay.testing import run_relay

from payloads import event, payload, visitor

ONCE = RetryPolicy(max_attempts=1)


def _wait_for_hang_up(server: HostileServer, timeout: float = 15.0) -> float:
    ends = time.monotonic() + timeout
    while not server.held and time.monotonic() < ends:
        time.sleep(0.05)
    assert server.held, "the client never hung up on the trickling server"
    return server.held[0]


def test_the_deadline_transport_ends_a_trickled_answer() -> None:
    with hostile_server("trickle") as server:
        client = httpx.Client(transport=deadline_transport(), timeout=1.0)
        started = time.monotonic()
        try:
            with deadline(1.0):
                client.post(server.url, content=b"{}")
        except httpx.TimeoutException as exc:
            assert "deadline" in str(exc) or "timed out" in str(exc)
        else:  # pragma: no cover
            raise AssertionError("a trickled answer was waited for to the end")
        finally:
            client.close()
        assert time.monotonic() - started < 10
        # Outside a deadline, the transport is httpx's own (per-operation timeouts).
        assert _wait_for_hang_up(server) < 10


def test_batch_dispatcher_gives_up_on_a_trickling_upstream() -> None:
    with hostile_server("trickle") as server:
        started = time.monotonic()
        with BatchDispatcher(endpoint=server.base_url, timeout=1.0, retry=ONCE) as bd:
            bd.dispatch_event(event())
            outcome = bd.flush(30)
            stats = bd.stats()
        assert time.monotonic() - started < 15
        assert outcome.pending == 0 and stats.failed_total == 1
        assert stats.last_error is not None and "timed out" in stats.last_error
        assert _wait_for_hang_up(server) < 10


def test_async_dispatcher_gives_up_on_a_trickling_upstream() -> None:
    with hostile_server("trickle") as server:

        async def main() -> tuple[int, str | None]:
            async with AsyncDispatcher(endpoint=server.base_url, timeout=1.0, retry=ONCE) as d:
                d.dispatch_event(event())
                await d.flush(30)
                stats = d.stats()
                return stats.failed_total, stats.last_error

        started = time.monotonic()
        failed, last_error = asyncio.run(main())
        assert time.monotonic() - started < 15
        assert failed == 1 and last_error is not None and "deadline" in last_error
        assert _wait_for_hang_up(server) < 10


def test_default_dispatcher_frees_its_pool_thread() -> None:
    """The caller's wait was already bounded; now the pool thread lets go too."""
    with (
        hostile_server("trickle") as server,
        DefaultEventDispatcher(endpoint=server.url, timeout=1.0) as d,
    ):
        started = time.monotonic()
        d.dispatch_event(event())
        assert time.monotonic() - started < 10
        assert d.stats().failed_total == 1
        assert _wait_for_hang_up(server) < 10


def test_relay_forwarder_lets_go_of_a_trickling_upstream(tmp_path: Path) -> None:
    with (
        hostile_server("trickle") as server,
        run_relay(
            spool=f"sqlite:///{tmp_path}/relay.db",
            upstream=server.url,
            timeout=1,
            flush_interval=0.05,
            shutdown_timeout=1,
        ) as relay,
    ):
        answer = relay.http.post("/v1/events", json=payload([visitor()]))
        assert answer.status_code == 204
        assert _wait_for_hang_up(server) < 10
