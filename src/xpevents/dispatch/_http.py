"""The HTTP side the drivers share: their pooled clients, and one request's arguments.

Both batching drivers send a :class:`~xpevents.send.planner.Request` the same way (a
POST of the joined body, or a GET with query parameters for a raw GET event); only
``await`` differs. Their own clients are pooled and keep-alive, sized for the senders
plus a little slack; httpx's defaults apply otherwise (the usual proxy environment
variables included).
"""

from __future__ import annotations

from typing import Any

import httpx

from xpevents.send.planner import Request

__all__ = ["async_client", "request_arguments", "sync_client"]


def _limits(senders: int) -> httpx.Limits:
    return httpx.Limits(max_connections=senders + 2, max_keepalive_connections=senders + 2)


def sync_client(senders: int, timeout: float) -> httpx.Client:
    """A pooled ``httpx.Client`` for ``senders`` sender threads."""
    return httpx.Client(timeout=httpx.Timeout(timeout), limits=_limits(senders))


def async_client(senders: int, timeout: float) -> httpx.AsyncClient:
    """A pooled ``httpx.AsyncClient`` for ``senders`` sender tasks."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=_limits(senders))


def request_arguments(request: Request, timeout: float) -> dict[str, Any]:
    """Keyword arguments of ``client.request(method, url, ...)`` for ``request``."""
    if request.method == "GET":
        return {"params": request.params(), "headers": request.headers, "timeout": timeout}
    return {"content": request.content, "headers": request.headers, "timeout": timeout}
