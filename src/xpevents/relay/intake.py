"""From one event API request to its answer: the relay's ingest, on both paths.

:meth:`Intake.ingest` answers a request from its ASGI scope and ``receive`` (the
fast path of :mod:`xpevents.relay.fastpath`, Starlette's routes); :meth:`Intake.ingest_whole`
answers one the HTTP protocol received whole (:mod:`xpevents.serving.direct`), with the
same answers and counters. In order: the token (``401``), shutdown (``503``), the body
(:mod:`xpevents.serving.body`: ``408``, ``413``, ``415``, ``400``), the payload
(:func:`~xpevents.relay.ingest.split_payload`: ``400`` naming the JSON path), the spool
(``204`` once committed; ``503`` + ``Retry-After`` while full or failing).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope

from xpevents.errors import BodyRejected, PayloadSchemaError, SpoolError, SpoolFull
from xpevents.relay.committer import Committer
from xpevents.relay.fastpath import EVENT_PATHS
from xpevents.relay.ingest import split_payload
from xpevents.relay.metrics import RelayMetrics
from xpevents.relay.routing import CANONICAL
from xpevents.relay.settings import RelaySettings
from xpevents.relay.writer import SpoolWriter
from xpevents.serving.body import first_header, header, read_asgi_body, whole_body
from xpevents.serving.direct import Deferred, DirectHandler
from xpevents.serving.endpoints import invalid_payload, json_response, rejected
from xpevents.spool.memory import MemorySpool

__all__ = ["Intake"]

_PARSE_INLINE: Final = 65_536
"""Bodies up to this size are parsed in the event loop; larger ones in a thread."""
_NO_CONTENT: Final = Response(status_code=204)
"""The answer to every spooled request (a Response can be sent any number of times)."""


class Intake:
    """The relay's answers to event API requests (see the module docstring).

    Args:
        settings: the relay's settings (token, body limits, ``Retry-After``).
        metrics: where requests, refusals and visitors are counted.
        writer: admission and writes (a memory spool is written in the loop).
        committer: group commits of a durable spool.
        routes_to: region -> the URL put in each envelope.
        closing: ``True`` once the relay shuts down (requests are refused ``503``).
    """

    def __init__(
        self,
        settings: RelaySettings,
        metrics: RelayMetrics,
        writer: SpoolWriter,
        committer: Committer,
        routes_to: dict[str, str],
        closing: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.writer = writer
        self.committer = committer
        self.routes_to = routes_to
        self._closing = closing
        self._token = settings.token.encode() if settings.token else None
        self._memory = isinstance(writer.store, MemorySpool)
        self._received, self._spooled = _by_region(metrics)
        self._counted: dict[tuple[str, int], Any] = {}

    async def ingest(self, scope: Scope, receive: Receive, region: str) -> Response:
        """Answer one event API request of ``region`` from its raw ASGI scope and receive."""
        try:
            response = await self._handle(scope, receive, region)
        except ClientDisconnect:
            response = Response(status_code=400)  # nobody is listening
        return self._counted_answer(region, response)

    def direct_routes(self) -> dict[bytes, DirectHandler]:
        """The event API paths, each to :meth:`ingest_whole` of its region
        (:class:`~xpevents.serving.direct.DirectProtocol`'s ``direct_routes``)."""
        return {
            path.encode(): functools.partial(self.ingest_whole, region)
            for path, region in EVENT_PATHS.items()
        }

    def ingest_whole(
        self, region: str, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> Response | Deferred | None:
        """:meth:`ingest` for a request received whole; ``None`` for a gzip (or otherwise
        encoded) body, which :meth:`ingest` reads."""
        if first_header(headers, b"content-encoding") not in (None, "", "identity"):
            return None
        refused = self._refused(first_header(headers, b"authorization"))
        if refused is None:
            try:
                body = whole_body(headers, body, max_body=self.settings.max_body)
            except BodyRejected as exc:
                self.metrics.rejected.labels(exc.reason).inc()
                refused = rejected(exc)
        if refused is None:
            split = self._split(body, region)
            if isinstance(split, Response):
                refused = split
            else:
                envelope, visitors = split
                pending = self._submit(envelope, visitors, region)
                if not isinstance(pending, Response):
                    then = functools.partial(self._committed, len(visitors), region)
                    return Deferred(pending, then)
                refused = pending
        return self._counted_answer(region, refused)

    def _counted_answer(self, region: str, response: Response) -> Response:
        status = response.status_code
        counter = self._counted.get((region, status))
        if counter is None:
            counter = self._counted[region, status] = self.metrics.requests.labels(
                region, str(status)
            )
        counter.inc()
        return response

    async def _handle(self, scope: Scope, receive: Receive, region: str) -> Response:
        refused = self._refused(header(scope, b"authorization"))
        if refused is not None:
            return refused
        settings = self.settings
        try:
            body = await read_asgi_body(
                scope, receive, max_body=settings.max_body, timeout=settings.read_timeout
            )
        except BodyRejected as exc:
            self.metrics.rejected.labels(exc.reason).inc()
            return rejected(exc)
        if len(body) > _PARSE_INLINE:
            split = await run_in_threadpool(self._split, body, region)
        else:  # msgspec parses a small body in microseconds: no thread hand-off
            split = self._split(body, region)
        if isinstance(split, Response):
            return split
        return await self._spool(*split, region)

    def _refused(self, authorization: str | None) -> Response | None:
        """The answer to a request refused before its body is read, else ``None``."""
        if self._token is not None and not self._authorized(authorization):
            self.metrics.rejected.labels("unauthorized").inc()
            return json_response(
                {"error": "missing or wrong token: send 'Authorization: Bearer <token>'"},
                401,
                {"WWW-Authenticate": 'Bearer realm="xpevents relay"'},
            )
        if self._closing():
            return self._busy("shutting_down", "the relay is shutting down", 0)
        return None

    def _split(self, body: bytes, region: str) -> tuple[bytes, list[bytes]] | Response:
        try:
            return split_payload(body, self.routes_to[region])
        except PayloadSchemaError as exc:
            self.metrics.rejected.labels(exc.reason).inc()
            return invalid_payload(exc)

    def _authorized(self, authorization: str | None) -> bool:
        assert self._token is not None
        scheme, _, credentials = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self._token
        )

    async def _spool(self, envelope: bytes, visitors: list[bytes], region: str) -> Response:
        """:meth:`_submit`, waiting for the commit."""
        pending = self._submit(envelope, visitors, region)
        if isinstance(pending, Response):
            return pending
        try:
            await pending
        except (SpoolFull, SpoolError) as exc:
            return self._spooled_answer(len(visitors), region, exc)
        return self._spooled_answer(len(visitors), region, None)

    def _submit(
        self, envelope: bytes, visitors: list[bytes], region: str
    ) -> Response | asyncio.Future[None]:
        """Write (a memory spool here and now: its answer) or queue the commit (its future)."""
        n = len(visitors)
        self._received[region].inc(n)
        try:
            if not self._memory:
                return self.committer.submit(envelope, visitors)
            self.writer.write(envelope, visitors, now=time.time())
        except (SpoolFull, SpoolError) as exc:
            return self._spooled_answer(n, region, exc)
        return self._spooled_answer(n, region, None)

    def _committed(self, n: int, region: str, future: asyncio.Future[None]) -> Response:
        failure = future.exception()
        if failure is not None and not isinstance(failure, SpoolFull | SpoolError):
            raise failure  # a bug: answered 500 by the protocol
        return self._counted_answer(region, self._spooled_answer(n, region, failure))

    def _spooled_answer(self, n: int, region: str, failure: BaseException | None) -> Response:
        if isinstance(failure, SpoolFull):
            return self._busy("spool_full", f"spool full: {failure}", n)
        if failure is not None:
            return self._busy("spool_error", f"spool unavailable: {failure}", n)
        self._spooled[region].inc(n)
        return _NO_CONTENT

    def _busy(self, reason: str, message: str, visitors: int) -> Response:
        if visitors:
            self.metrics.refused.labels(reason).inc(visitors)
        return json_response(
            {"error": f"{message}; retry later", "reason": reason},
            503,
            {"Retry-After": str(self.settings.retry_after)},
        )


def _by_region(metrics: RelayMetrics) -> tuple[dict[str, Any], dict[str, Any]]:
    """The received and spooled counters of each region (no label lookup per request)."""
    return (
        {region: metrics.received.labels(region) for region in CANONICAL},
        {region: metrics.spooled.labels(region) for region in CANONICAL},
    )
