"""The HTTP side the drivers share: their pooled clients, and one request's arguments.

Both batching drivers send a :class:`~xpevents.send.planner.Request` the same way (a
POST of the joined body, or a GET with query parameters for a raw GET event); only
``await`` differs. Their own clients are pooled and keep-alive, sized for the senders
plus a little slack; httpx's defaults apply otherwise (the usual proxy environment
variables included). The sync client honours a total deadline per request
(:mod:`xpevents.dispatch.deadline`); the asyncio driver bounds each request itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from xpevents.dispatch.deadline import deadline, enforce_deadlines
from xpevents.dispatch.direct import DirectPool
from xpevents.send.outcome import ResponseLike
from xpevents.send.planner import Request

__all__ = ["async_client", "bounded_request", "request_arguments", "send_sync", "sync_client"]


def _limits(senders: int) -> httpx.Limits:
    return httpx.Limits(max_connections=senders + 2, max_keepalive_connections=senders + 2)


def sync_client(senders: int, timeout: float) -> httpx.Client:
    """A pooled ``httpx.Client`` for ``senders`` sender threads, honouring deadlines."""
    client = httpx.Client(timeout=httpx.Timeout(timeout), limits=_limits(senders))
    enforce_deadlines(client)
    return client


def send_sync(
    client: httpx.Client, direct: DirectPool | None, request: Request, timeout: float
) -> ResponseLike:
    """Send ``request`` within ``timeout``: on ``direct`` (:mod:`http.client`) when it is
    a POST that ``client`` would send direct, else through ``client``."""
    content = request.content
    if direct is not None and content is not None and request.method == "POST":
        route = direct.route(request.url)
        if route is not None:
            return direct.post(route, request.headers, content, timeout)
    with deadline(timeout):  # a trickling answer cannot hold the sender
        return client.request(request.method, request.url, **request_arguments(request, timeout))


def async_client(senders: int, timeout: float) -> httpx.AsyncClient:
    """A pooled ``httpx.AsyncClient`` for ``senders`` sender tasks."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=_limits(senders))


def request_arguments(request: Request, timeout: float) -> dict[str, Any]:
    """Keyword arguments of ``client.request(method, url, ...)`` for ``request``."""
    if request.method == "GET":
        return {"params": request.params(), "headers": request.headers, "timeout": timeout}
    return {"content": request.content, "headers": request.headers, "timeout": timeout}


async def bounded_request(
    client: httpx.AsyncClient, request: Request, timeout: float
) -> httpx.Response:
    """Send ``request``, bounded as a whole by ``timeout`` (a trickled answer included)."""
    try:
        async with asyncio.timeout(timeout):
            return await client.request(
                request.method, request.url, **request_arguments(request, timeout)
            )
    except TimeoutError:
        raise httpx.ReadTimeout(f"the request's total deadline of {timeout:g} s passed") from None
