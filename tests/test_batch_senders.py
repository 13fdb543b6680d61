"""BatchDispatcher's reserve senders: two always send, more join only for a slow endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from xpevents import BatchDispatcher
from xpevents.dispatch.senders import ALWAYS_SENDING, SLOW_REQUEST, SenderSlots

from payloads import event


class _Counting:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.visitors = 0


@contextmanager
def counting_server(delay: float) -> Iterator[tuple[str, _Counting]]:
    state = _Counting(delay)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.in_flight += 1
                state.most = max(state.most, state.in_flight)
            time.sleep(state.delay)
            with state.lock:
                state.in_flight -= 1
                state.visitors += body.count(b'"visitor_id"')
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def _load(dispatcher: BatchDispatcher, n: int, seconds: float) -> None:
    """``n`` events spread over ``seconds`` (a backlog builds while requests are slow)."""
    for i in range(n):
        dispatcher.dispatch_event(event())
        if i % 50 == 49:
            time.sleep(seconds * 50 / n)


def test_reserves_join_while_the_endpoint_is_slow() -> None:
    with counting_server(delay=0.3) as (url, state):
        dispatcher = BatchDispatcher(endpoint=url, batch_size=10, max_batch_bytes=20_000)
        _load(dispatcher, 2_000, 1.5)
        assert dispatcher.flush(30).pending == 0
        dispatcher.close()
    assert state.visitors == 2_000
    assert state.most > ALWAYS_SENDING  # the reserves carried part of the backlog
    assert state.most <= 4  # the default max_concurrent_requests


def test_concurrency_never_exceeds_the_option() -> None:
    with counting_server(delay=0.2) as (url, state):
        dispatcher = BatchDispatcher(
            endpoint=url, batch_size=10, max_batch_bytes=20_000, max_concurrent_requests=2
        )
        _load(dispatcher, 1_000, 1.0)
        assert dispatcher.flush(30).pending == 0
        dispatcher.close()
    assert state.visitors == 1_000 and state.most <= 2


def test_a_reserve_stays_out_until_every_earlier_sender_is_slow() -> None:
    slots = SenderSlots(4)
    assert not slots.stays_out(0, flushing=False) and not slots.stays_out(1, flushing=False)
    assert slots.stays_out(2, flushing=False)  # nobody busy: waits, then stays out
    slots.begin(0)
    assert slots.stays_out(2, flushing=False)  # sender 1 idle
    slots.begin(1)
    assert slots.stays_out(2, flushing=False)  # busy, not for long yet
    slots.started[0] -= 1.0
    slots.started[1] -= 1.0
    assert not slots.stays_out(2, flushing=False)  # both slow: the reserve sends
    assert slots.stays_out(3, flushing=False)  # sender 2 is not busy
    assert not slots.stays_out(3, flushing=True)  # a flush takes every sender
    slots.end(0)
    assert slots.stays_out(2, flushing=False)
    slots.stopped.set()
    started = time.monotonic()
    assert not slots.stays_out(3, flushing=False)  # stopping: out of the wait at once
    assert time.monotonic() - started < 100 * SLOW_REQUEST
