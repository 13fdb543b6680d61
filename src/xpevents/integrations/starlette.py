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

Or let :func:`install` own them: it builds the ``Client`` over an ``AsyncDispatcher``,
wraps the app's lifespan, and :func:`get_client` / :func:`get_user` (FastAPI
dependencies, or plain calls in Starlette) hand them to each request::

    app = FastAPI()
    install(app, datafile_path="datafile.json", user=lambda r: r.headers.get("x-user-id"))

    @app.get("/buy")
    def buy(user: OptimizelyUserContext = Depends(get_user)):
        user.track_event("purchase")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request

from xpevents.client.client import Client
from xpevents.client.user_context import OptimizelyUserContext
from xpevents.dispatch.aio import AsyncDispatcher
from xpevents.errors import ConfigError
from xpevents.integrations.settings import Settings, Wiring, build

__all__ = ["get_client", "get_user", "install", "lifespan"]

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


UserOf = Callable[[Request], "str | tuple[str, dict[str, Any]] | None"]
"""``user(request)``: the user id, or ``(user_id, attributes)``, or ``None`` (no user)."""


def install(
    app: Any,
    datafile: str | bytes | dict[str, Any] | None = None,
    *,
    datafile_path: str | None = None,
    endpoint: str | None = None,
    spool: str | None = None,
    user: UserOf | None = None,
    client_options: dict[str, Any] | None = None,
    flush_timeout: float = 10.0,
    **dispatcher_options: Any,
) -> Wiring:
    """Own a ``Client`` over an ``AsyncDispatcher`` for a Starlette or FastAPI ``app``.

    The app's lifespan (yours included, it runs inside) is wrapped by :func:`lifespan`:
    the dispatcher starts on the app's loop and is flushed (``flush_timeout``, default
    10 s) and closed at shutdown. ``app.state.xpevents`` holds the returned
    :class:`~xpevents.integrations.settings.Wiring`.

    Args:
        app: a ``Starlette`` or ``FastAPI`` application, before it starts.
        datafile, datafile_path: the datafile (JSON text or a dict) or a file holding
            it; exactly one.
        endpoint, spool, **dispatcher_options: ``AsyncDispatcher`` options.
        user: ``user(request)`` → user id or ``(user_id, attributes)``, for
            :func:`get_user`. Default none (``get_user`` then refuses).
        client_options: more ``Client`` keyword arguments. Default none.

    Raises:
        ConfigError: a missing datafile, a bad option, or an app without a router.
    """
    router: Any = getattr(app, "router", None)
    if not hasattr(router, "lifespan_context"):
        raise ConfigError(f"install({app!r}): expected a Starlette or FastAPI application")
    if user is not None and not callable(user):
        raise ConfigError(f"install(user={user!r}): expected a function of the request")
    settings = Settings(
        datafile=datafile,
        datafile_path=datafile_path,
        endpoint=endpoint,
        spool=spool,
        dispatcher=dispatcher_options,
        client=client_options or {},
        flush_timeout=flush_timeout,
        source="xpevents.integrations.starlette.install()",
    ).checked()
    wiring = build(settings, on_event_loop=True)
    router.lifespan_context = lifespan(
        wiring.dispatcher,
        wiring.client,
        flush_timeout=flush_timeout,
        app_lifespan=router.lifespan_context,
    )
    app.state.xpevents = wiring
    app.state.xpevents_user = user
    return wiring


def get_client(request: Request) -> Client:
    """The ``Client`` :func:`install` created (a FastAPI dependency, or call it).

    Raises:
        ConfigError: :func:`install` was not called for this app.
    """
    wiring = getattr(request.app.state, "xpevents", None)
    if not isinstance(wiring, Wiring):
        raise ConfigError(
            "get_client(request): no xpevents client on this app; call "
            "xpevents.integrations.starlette.install(app, ...) at startup"
        )
    return wiring.client


def get_user(request: Request) -> OptimizelyUserContext:
    """The request's user context, made once per request from ``install(user=...)``.

    Raises:
        ConfigError: ``install`` was given no ``user`` function.
        HTTPException: 400 when the request carries no valid user id (a client's mistake).
    """
    cached = getattr(request.state, "xpevents_user", None)
    if isinstance(cached, OptimizelyUserContext):
        return cached
    client = get_client(request)
    user_of = getattr(request.app.state, "xpevents_user", None)
    if user_of is None:
        raise ConfigError(
            "get_user(request): install(app, ..., user=lambda request: ...) says how to "
            "find the user id in a request"
        )
    found = user_of(request)
    user_id, attributes = found if isinstance(found, tuple) else (found, None)
    context = None if not user_id else client.create_user_context(user_id, attributes)
    if context is None:
        raise HTTPException(400, "this request carries no valid user id")
    request.state.xpevents_user = context
    return context
