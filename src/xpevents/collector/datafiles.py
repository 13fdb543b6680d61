"""The collector's datafile server: a CDN stand-in for tests, the demo and benchmarks.

Routes:

* ``PUT`` or ``POST /datafiles/{sdk_key}.json``: the body becomes the datafile served
  for that key (``201`` the first time, ``200`` after; the answer says its ``etag``).
  The body must be a JSON object unless ``?unchecked=1`` (to serve garbage on purpose).
  ``?access_token=T`` makes it an authenticated datafile, served only on the auth path
  to ``Authorization: Bearer T``.
* ``GET /datafiles/{sdk_key}.json``: the datafile, with ``ETag`` and ``Last-Modified``;
  ``304`` for a matching ``If-None-Match`` (or an ``If-Modified-Since`` not older than
  it); ``404`` for an unknown key; ``403`` for an authenticated one.
* ``GET /datafiles/auth/{sdk_key}.json``: the same, checking ``Authorization: Bearer``
  (``401`` without it, ``403`` with a wrong token) when the datafile has a token.
* ``DELETE /datafiles/{sdk_key}.json``: forget it (``204``; ``404`` if unknown).
* ``GET /datafiles``: what is served (key, etag, size, authenticated, requests).

The collector's fault injection (``/control``: latency, 500/503, 429, HTML 200,
dropped connections) applies to every ``GET`` here, drawn from the same generator as
the events endpoints.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from xpevents.collector.faults import Fault, FaultInjector
from xpevents.serving.endpoints import json_response

__all__ = ["ERROR_PAGE", "MAX_DATAFILE", "DatafileShelf", "ServedDatafile", "datafile_routes"]

MAX_DATAFILE: Final = 10_000_000
"""Largest datafile accepted by ``PUT``, in bytes."""
ERROR_PAGE: Final = (
    "<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head>"
    "<body><h1>Service Unavailable</h1><p>injected fault: an error page answered "
    "with 200</p></body></html>"
)

AbortOf = Callable[[Request], Callable[[], None] | None]


@dataclass(frozen=True, slots=True)
class ServedDatafile:
    """One datafile as served: its bytes and validators."""

    body: bytes
    etag: str
    last_modified: str
    modified_at: float
    access_token: str | None = None


class DatafileShelf:
    """The datafiles by SDK key, and what was asked of them. Thread-safe.

    Tests in the same process can :meth:`put` directly; everyone else uses ``PUT``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, ServedDatafile] = {}
        self._versions = 0
        self.requests: Counter[str] = Counter()
        """``GET`` requests by outcome: ``served``, ``not_modified``, ``not_found``,
        ``unauthorized``, ``forbidden`` and each injected fault."""

    def put(self, key: str, body: bytes, *, access_token: str | None = None) -> ServedDatafile:
        """Serve ``body`` for ``key`` from now on (a new ETag and Last-Modified)."""
        with self._lock:
            self._versions += 1
            now = time.time()
            # Last-Modified has a one-second grain: never repeat the previous one
            previous = self._files.get(key)
            if previous is not None and int(now) <= int(previous.modified_at):
                now = float(int(previous.modified_at) + 1)
            digest = hashlib.sha256(body).hexdigest()[:16]
            served = ServedDatafile(
                body,
                f'"{digest}-{self._versions}"',
                formatdate(now, usegmt=True),
                now,
                access_token,
            )
            self._files[key] = served
            return served

    def get(self, key: str) -> ServedDatafile | None:
        """The datafile served for ``key``, if any."""
        return self._files.get(key)

    def delete(self, key: str) -> bool:
        """Stop serving ``key``; whether it was served."""
        with self._lock:
            return self._files.pop(key, None) is not None

    def listing(self) -> list[dict[str, Any]]:
        """What is served, for ``GET /datafiles``."""
        return [
            {
                "sdk_key": key,
                "etag": served.etag,
                "bytes": len(served.body),
                "last_modified": served.last_modified,
                "authenticated": served.access_token is not None,
            }
            for key, served in sorted(self._files.items())
        ]


def _not_modified(request: Request, served: ServedDatafile) -> bool:
    tags = request.headers.get("if-none-match")
    if tags is not None:
        return served.etag in {t.strip() for t in tags.split(",")} or tags.strip() == "*"
    since = request.headers.get("if-modified-since")
    if since is None:
        return False
    try:
        return parsedate_to_datetime(since).timestamp() >= int(served.modified_at)
    except (TypeError, ValueError):
        return False


def _error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


class _Routes:
    def __init__(self, shelf: DatafileShelf, faults: FaultInjector, abort_of: AbortOf) -> None:
        self.shelf = shelf
        self.faults = faults
        self.abort_of = abort_of

    async def put(self, request: Request) -> Response:
        key = request.path_params["key"]
        body = await request.body()
        if len(body) > MAX_DATAFILE:
            return _error(413, f"a datafile is at most {MAX_DATAFILE} bytes")
        if request.query_params.get("unchecked") != "1":
            try:
                document = msgspec.json.decode(body)
            except msgspec.DecodeError as exc:
                return _error(400, f"not JSON ({exc}); add ?unchecked=1 to serve it anyway")
            if not isinstance(document, dict):
                return _error(400, "a datafile is a JSON object; add ?unchecked=1 to serve it")
        token = request.query_params.get("access_token") or None
        existed = self.shelf.get(key) is not None
        served = self.shelf.put(key, body, access_token=token)
        return json_response(
            {"sdk_key": key, "etag": served.etag, "bytes": len(body)},
            200 if existed else 201,
            {"ETag": served.etag},
        )

    async def delete(self, request: Request) -> Response:
        if self.shelf.delete(request.path_params["key"]):
            return Response(status_code=204)
        return _error(404, "no datafile for this SDK key")

    async def listing(self, request: Request) -> Response:
        return json_response({"datafiles": self.shelf.listing(), "requests": self.shelf.requests})

    async def get(self, request: Request) -> Response:
        return await self._serve(request, authenticated=False)

    async def get_auth(self, request: Request) -> Response:
        return await self._serve(request, authenticated=True)

    async def _serve(self, request: Request, *, authenticated: bool) -> Response:
        if self.faults.active:
            faulty = await self._fault(request)
            if faulty is not None:
                return faulty
        served = self.shelf.get(request.path_params["key"])
        outcome, response = self._answer(request, served, authenticated)
        self.shelf.requests[outcome] += 1
        return response

    def _answer(
        self, request: Request, served: ServedDatafile | None, authenticated: bool
    ) -> tuple[str, Response]:
        if served is None:
            return "not_found", _error(404, "no datafile for this SDK key")
        if served.access_token is not None:
            if not authenticated:
                return "forbidden", _error(403, "an authenticated datafile: use the auth path")
            given = request.headers.get("authorization")
            if given is None:
                return "unauthorized", _error(401, "Authorization: Bearer <token> required")
            if given != f"Bearer {served.access_token}":
                return "forbidden", _error(403, "wrong datafile access token")
        headers = {"ETag": served.etag, "Last-Modified": served.last_modified}
        if _not_modified(request, served):
            return "not_modified", Response(status_code=304, headers=headers)
        return "served", Response(served.body, 200, headers, media_type="application/json")

    async def _fault(self, request: Request) -> Response | None:
        settings = self.faults.settings
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        fault = self.faults.draw()
        if fault is Fault.NONE:
            return None
        self.shelf.requests[fault.value] += 1
        if fault is Fault.DROP:
            abort = self.abort_of(request)
            if abort is not None:
                abort()
                return Response(status_code=500)  # never sent: the connection is gone
            return _error(500, "injected fault: drop (unsupported by this server)")
        if fault is Fault.HTML_200:
            return HTMLResponse(ERROR_PAGE)
        if fault is Fault.HTTP_429:
            retry_after = format(settings.retry_after, "g")
            return json_response({"error": "injected fault"}, 429, {"Retry-After": retry_after})
        return _error(500 if fault is Fault.HTTP_500 else 503, "injected fault")


def datafile_routes(shelf: DatafileShelf, faults: FaultInjector, abort_of: AbortOf) -> list[Route]:
    """The ``/datafiles/`` routes over ``shelf``, with ``faults`` on every ``GET``."""
    routes = _Routes(shelf, faults, abort_of)
    return [
        Route("/datafiles", routes.listing, methods=["GET"]),
        Route("/datafiles/auth/{key}.json", routes.get_auth, methods=["GET"]),
        Route("/datafiles/{key}.json", routes.get, methods=["GET"]),
        Route("/datafiles/{key}.json", routes.put, methods=["PUT", "POST"]),
        Route("/datafiles/{key}.json", routes.delete, methods=["DELETE"]),
    ]
