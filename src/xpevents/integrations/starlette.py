"""A Starlette/FastAPI lifespan that starts and flushes xpevents dispatchers.

::

    from starlette.applications import Starlette
    from xpevents import AsyncDispatcher, Client
    from xpevents.integrations.starlette import lifespan

    dispatcher = AsyncDispatcher(endpoint="http://127.0.0.1:8788")
    client = Client(datafile, event_dispatcher=dispatcher)
    app = Starlette(routes=routes, lifespan=lifespan(dispatcher, client))
    # FastAPI: FastAPI(lifespan=lifespan(dispatcher, client))

At startup, each :class:`~xpevents.AsyncDispatcher` starts its senders on the app's loop.
At shutdown, in reverse order: an ``AsyncDispatcher`` is flushed and closed on the loop
(``await aclose(flush_timeout)``); anything else with a ``close(timeout)`` (a
:class:`~xpevents.Client`, a :class:`~xpevents.BatchDispatcher`) is closed in a worker
thread so the loop is not blocked. ``app_lifespan`` wraps your own lifespan: it runs
inside ours, so your shutdown code can still send events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from xpevents.dispatch.aio import AsyncDispatcher
from xpevents.errors import ConfigError

__all__ = ["lifespan"]

logger = logging.getLogger("xpevents.integrations")

App = TypeVar("App")
Lifespan = Callable[[App], contextlib.AbstractAsyncContextManager[Any]]


def lifespan(
    *owned: Any,
    flush_timeout: float = 10.0,
    app_lifespan: Lifespan[Any] | None = None,
) -> Lifespan[Any]:
    """A lifespan for ``Starlette(lifespan=...)`` / ``FastAPI(lifespan=...)``.

    Args:
        *owned: ``AsyncDispatcher``, ``BatchDispatcher`` or ``Client`` objects (anything
            with ``aclose()`` or ``close(timeout)``), started in order and closed in
            reverse order.
        flush_timeout: seconds each one may spend flushing at shutdown. Default 10.
        app_lifespan: your own lifespan, run inside this one. Default none.

    Raises:
        ConfigError: an object that can be neither started nor closed, or a
            ``flush_timeout`` that is not a positive number.
    """
    for item in owned:
        if not (isinstance(item, AsyncDispatcher) or callable(getattr(item, "close", None))):
            raise ConfigError(
                f"lifespan({item!r}): expected an AsyncDispatcher, BatchDispatcher or Client "
                "(something with close())"
            )
    if (
        isinstance(flush_timeout, bool)
        or not isinstance(flush_timeout, int | float)
        or not flush_timeout > 0
    ):
        raise ConfigError(f"lifespan(flush_timeout={flush_timeout!r}): expected seconds > 0")

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        async with contextlib.AsyncExitStack() as stack:
            for item in owned:
                if isinstance(item, AsyncDispatcher):
                    await item.start()
                stack.push_async_callback(_close, item, flush_timeout)
            if app_lifespan is None:
                yield None
            else:
                async with app_lifespan(app) as state:
                    yield state

    return run


async def _close(item: Any, timeout: float) -> None:
    try:
        if isinstance(item, AsyncDispatcher):
            outcome = await item.aclose(timeout)
            logger.info("closed %r at shutdown: %s", item, outcome)
        else:
            await asyncio.to_thread(item.close, timeout)
    except Exception:
        logger.exception("closing %r at shutdown failed", item)
