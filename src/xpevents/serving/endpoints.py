"""What the two services answer the same way: the event API paths, JSON, errors.

The relay and the collector accept the event API's two paths (``POST /v1/events`` for
the ``us`` region, ``POST /eu/v1/events`` for ``eu``), answer JSON from one encoder,
refuse a request with the one error shape ``{"error": ..., "reason": ..., "path": ...}``
(``path`` only when a JSON path is known), and answer ``GET /healthz`` alike. Both
paths are also routed with a trailing slash: a POST is never redirected (a 307 that
an HTTP client may not follow with its body).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from xpevents.errors import BodyRejected, PayloadSchemaError

__all__ = ["event_api_routes", "healthz", "invalid_payload", "json_response", "rejected"]

_JSON: Final = "application/json"
_encode = msgspec.json.Encoder().encode

EventHandler = Callable[[Request, str], Awaitable[Response]]
"""``handle(request, region)``: answers one event API request for ``"us"`` or ``"eu"``."""


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``data`` as compact JSON."""
    return Response(_encode(data), status, dict(headers or {}), media_type=_JSON)


def rejected(exc: BodyRejected) -> Response:
    """The answer to a refused request: its status and error body."""
    return json_response(exc.body(), exc.status)


def invalid_payload(exc: PayloadSchemaError) -> Response:
    """``400`` for a body that is not an event API payload, naming the first bad path."""
    return json_response({"error": str(exc), "reason": exc.reason, "path": exc.path}, 400)


async def healthz(request: Request) -> Response:
    """``GET /healthz``: the process is up and serving."""
    return json_response({"status": "ok"})


def event_api_routes(handle: EventHandler) -> list[Route]:
    """``POST /v1/events`` (region ``us``) and ``POST /eu/v1/events`` (``eu``) to ``handle``."""

    async def us_events(request: Request) -> Response:
        return await handle(request, "us")

    async def eu_events(request: Request) -> Response:
        return await handle(request, "eu")

    return [
        Route(path, handler, methods=["POST"])
        for path, handler in (("/v1/events", us_events), ("/eu/v1/events", eu_events))
        for path in (path, path + "/")
    ]
