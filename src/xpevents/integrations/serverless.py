"""AWS Lambda (and other frozen-between-calls runtimes): flush before each return.

A frozen execution environment runs no background thread between invocations, so what
a handler queued must be sent before it returns::

    from xpevents import BatchDispatcher, Client
    from xpevents.integrations.serverless import flush_after

    dispatcher = BatchDispatcher(flush_interval=60)      # once per container
    client = Client(datafile, event_dispatcher=dispatcher)

    @flush_after(dispatcher, timeout=2.0)
    def handler(event, context):
        client.activate("checkout_button_color", event["user_id"])
        return {"ok": True}

After the handler returns (or raises), the dispatcher is flushed for at most ``timeout``
seconds, and never past the invocation's own deadline: when the context has
``get_remaining_time_in_millis()`` (Lambda's), the flush ends ``reserve`` seconds before
it. What is still unsent stays queued and goes with the next invocation's flush (a
durable spool keeps it across a container's end too). The flush never raises; its
outcome is ``handler.last_outcome``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar

from xpevents.errors import ConfigError
from xpevents.stats import DispatchOutcome

__all__ = ["flush_after", "flush_budget"]

logger = logging.getLogger("xpevents.integrations")

P = ParamSpec("P")
R = TypeVar("R")


class Flushable(Protocol):
    def flush(self, timeout: float = ...) -> DispatchOutcome: ...


def flush_budget(context: Any, timeout: float, reserve: float) -> float:
    """Seconds the flush may take: ``timeout``, capped by the context's remaining time."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return timeout
    try:
        left = float(remaining()) / 1000.0 - reserve
    except Exception:  # a context we do not understand: fall back on the timeout
        return timeout
    return max(0.0, min(timeout, left))


def _target(dispatcher: Any) -> Flushable:
    target = getattr(dispatcher, "event_dispatcher", dispatcher)  # a Client: its dispatcher
    if not callable(getattr(target, "flush", None)):
        raise ConfigError(
            f"flush_after({dispatcher!r}): expected a BatchDispatcher or a Client over one "
            "(something with flush(timeout))"
        )
    return target  # type: ignore[no-any-return]


def flush_after(
    dispatcher: Any, *, timeout: float = 2.0, reserve: float = 0.1
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a handler so every invocation ends with a bounded flush.

    Args:
        dispatcher: a ``BatchDispatcher`` (or a ``Client`` sending through one).
        timeout: the longest flush, in seconds. Default 2.
        reserve: seconds left untouched before the invocation's deadline, taken from
            the handler's second argument (``context.get_remaining_time_in_millis()``).
            Default 0.1.

    Raises:
        ConfigError: nothing to flush, or a timeout / reserve that is not seconds.
    """
    target = _target(dispatcher)
    for name, value, low in (("timeout", timeout, 0.0), ("reserve", reserve, -1.0)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > low:
            bound = "> 0" if low == 0.0 else ">= 0"
            raise ConfigError(f"flush_after({name}={value!r}): expected seconds {bound}")

    def decorate(handler: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(handler)
        def invoke(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return handler(*args, **kwargs)
            finally:
                context = args[1] if len(args) > 1 else kwargs.get("context")
                invoke.last_outcome = _flush(target, flush_budget(context, timeout, reserve))  # type: ignore[attr-defined]

        invoke.last_outcome = None  # type: ignore[attr-defined]
        return invoke

    return decorate


def _flush(target: Flushable, seconds: float) -> DispatchOutcome | None:
    try:
        outcome = target.flush(seconds)
    except Exception:
        logger.exception("flushing %r after the invocation failed", target)
        return None
    if outcome.pending:
        logger.warning(
            "%d visitor(s) still unsent after a %.3f s flush: they go with the next "
            "invocation's flush",
            outcome.pending,
            seconds,
        )
    return outcome
