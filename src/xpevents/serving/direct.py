"""Requests answered by the HTTP protocol itself, without an ASGI task: the hot path.

uvicorn runs every request as an asyncio task around the ASGI application: a request
cycle object, an ``asyncio.Event``, the task, the ``receive``/``send`` message dicts,
two writes for the answer. For the relay's ``POST /v1/events`` (every request of every
SDK) that machinery cost about 20 µs of the ~50 µs a request takes in uvicorn on this
project's benchmark machine (issue 16, seventh pass). :class:`DirectProtocol` answers
such requests from the parser's callbacks instead: when a request to one of its
``direct_routes`` has arrived whole within one read (its headers and a
``Content-Length`` body of at most ``direct_max_body`` bytes), the route's handler is
called with the headers and the body, and its answer (a Starlette ``Response``, or a
:class:`Deferred` one) is written in one piece, byte for byte as uvicorn writes it.

Everything else is left to uvicorn and the ASGI application, unchanged: another method
or path, a query string, ``Expect: 100-continue``, a chunked or larger body, a body
still arriving when the read ends (handed over with what has arrived, so the
application's read timeout applies as before), a handler that answers ``None``
(gzip, for the relay), a saturated server (its ``503``), and a request pipelined
behind one in progress (queued by uvicorn, started when the one before is answered, so
answers keep the requests' order). A connection told to shut down, or an HTTP/1.0 one,
is closed after its answer; a deferred answer is waited for by a graceful shutdown like
a task; a client that went away gets nothing written.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from starlette.responses import PlainTextResponse, Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from xpevents.serving.guard import GuardedProtocol

__all__ = ["Deferred", "DirectHandler", "DirectProtocol", "response_bytes"]

logger = logging.getLogger("xpevents.serving")

Headers = Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Deferred:
    """An answer that is not known yet: ``then(future)`` once ``future`` is done."""

    future: asyncio.Future[Any]
    then: Callable[[asyncio.Future[Any]], Response]


DirectHandler = Callable[[Headers, bytes], Response | Deferred | None]
"""``handler(headers, body)``: the answer, a :class:`Deferred` one, or ``None`` to leave
the request to the ASGI application (before doing anything with it). It must not
raise: an exception is logged and answered ``500`` as the ASGI path answers it."""

_SERVER_ERROR: Final = PlainTextResponse("Internal Server Error", status_code=500)


class _NoEvent:
    """uvicorn sets its cycle's ``message_event`` on body data and disconnects."""

    __slots__ = ()

    def set(self) -> None:
        pass


_NO_EVENT: Final = _NoEvent()


class _DirectCycle:
    """What uvicorn's protocol reads and writes of a request cycle, for a direct request."""

    __slots__ = ("body", "disconnected", "handler", "keep_alive", "more_body", "response_complete")

    message_event: ClassVar[_NoEvent] = _NO_EVENT

    def __init__(self, handler: DirectHandler, keep_alive: bool) -> None:
        self.handler = handler
        self.keep_alive = keep_alive
        self.body = b""
        self.more_body = True
        self.response_complete = False
        self.disconnected = False


def response_bytes(
    response: Response, keep_alive: bool, default_headers: Sequence[tuple[bytes, bytes]] = ()
) -> tuple[bytes, bool]:
    """``response`` as uvicorn's httptools protocol writes it, and whether the connection
    stays open (a ``Connection: close`` of the response closes it, as in uvicorn)."""
    status = response.status_code
    parts = [STATUS_LINE[status]]
    has_close = False
    framed = False
    for name, value in (*default_headers, *response.raw_headers):
        name = name.lower()
        if name in (b"content-length", b"transfer-encoding"):
            framed = True
        elif name == b"connection" and b"close" in [t.lower().strip() for t in value.split(b",")]:
            keep_alive = False
            has_close = True
        parts += (name, b": ", value, b"\r\n")
    if not keep_alive and not has_close:
        parts.append(b"connection: close\r\n")
    body = response.body if isinstance(response.body, bytes) else bytes(response.body)
    if not framed and status not in (204, 304):  # uvicorn frames it chunked
        parts.append(b"transfer-encoding: chunked\r\n\r\n")
        if body:
            parts += (b"%x\r\n" % len(body), body, b"\r\n")
        parts.append(b"0\r\n\r\n")
    else:
        parts += (b"\r\n", body)
    return b"".join(parts), keep_alive


class DirectProtocol(GuardedProtocol):
    """:class:`GuardedProtocol` answering ``direct_routes`` itself (module docstring).

    ``direct_routes`` maps a request target, exactly as sent (``b"/v1/events"``), to the
    handler of ``POST`` requests to it.
    """

    direct_routes: ClassVar[Mapping[bytes, DirectHandler]] = {}
    direct_max_body: ClassVar[int] = 65_536

    def _start_request(self) -> None:
        handler = self.direct_routes.get(self.url)
        if handler is not None and self._direct_eligible():
            version = self.parser.get_http_version()
            self.cycle = _DirectCycle(  # type: ignore[assignment]
                handler, keep_alive=version != "1.0" and self.parser.should_keep_alive()
            )
            return
        super()._start_request()

    def _direct_eligible(self) -> bool:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            return False  # pipelined behind a request in progress: uvicorn queues it
        if self.expect_100_continue or self._saturated():
            return False
        if self.parser.get_method() != b"POST":
            return False
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                if length is not None:
                    return False
                length = value
            elif name == b"transfer-encoding":
                return False
        return length is not None and length.isdigit() and int(length) <= self.direct_max_body

    def _direct_cycle(self) -> _DirectCycle | None:
        cycle: object = self.cycle
        return cycle if type(cycle) is _DirectCycle else None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self._direct_cycle()
        if cycle is not None and cycle.more_body and not self.transport.is_closing():
            self._to_application(cycle)  # the body is still arriving: uvicorn reads it

    def on_body(self, body: bytes) -> None:
        cycle = self._direct_cycle()
        if cycle is not None:
            cycle.body += body
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        cycle = self._direct_cycle()
        if cycle is None or not cycle.more_body:
            super().on_message_complete()
            return
        cycle.more_body = False
        try:
            answer = cycle.handler(self.headers, cycle.body)
        except Exception:
            logger.exception("the handler of %r failed", self.url)
            answer = _SERVER_ERROR
        if answer is None:
            self._to_application(cycle)
        elif isinstance(answer, Deferred):
            future = answer.future
            self.tasks.add(future)  # type: ignore[arg-type]  # a graceful shutdown waits
            future.add_done_callback(functools.partial(self._deferred_done, cycle, answer))
        else:
            self._answer(cycle, answer)

    def _to_application(self, cycle: _DirectCycle) -> None:
        """Start uvicorn's own cycle and task for this request, with the body so far."""
        self.cycle = None  # type: ignore[assignment]  # nothing in progress: start at once
        HttpToolsProtocol.on_headers_complete(self)
        if cycle.body:
            self.cycle.body += cycle.body
        if not cycle.more_body:
            self.cycle.more_body = False
        self.cycle.message_event.set()

    def _deferred_done(
        self, cycle: _DirectCycle, answer: Deferred, future: asyncio.Future[Any]
    ) -> None:
        self.tasks.discard(future)
        if future.cancelled():  # a shutdown that stopped waiting: as for a task
            cycle.response_complete = True
            if not self.transport.is_closing():
                self.transport.close()
            return
        try:
            response = answer.then(future)
        except Exception:
            logger.exception("the handler of a direct request failed")
            response = _SERVER_ERROR
        self._answer(cycle, response)

    def _answer(self, cycle: _DirectCycle, response: Response) -> None:
        cycle.response_complete = True
        if cycle.disconnected or self.transport.is_closing():
            return  # nobody to answer (uvicorn's send returns too)
        data, keep_alive = response_bytes(
            response, cycle.keep_alive, self.server_state.default_headers
        )
        self.transport.write(data)
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()
