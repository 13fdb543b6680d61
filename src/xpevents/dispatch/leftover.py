"""What a dispatcher says about visitors it still holds when the process lets go of it.

A :class:`~xpevents.BatchDispatcher` is closed (flushed) by an ``atexit`` hook; this
module makes that hook say what it is flushing. An :class:`~xpevents.AsyncDispatcher`
cannot be flushed at exit or at garbage collection (its event loop is gone by then), so
when one still holds visitors in memory it logs one WARNING with the count and the fix,
and counts them as dropped (``"unsent_at_exit"``). Visitors in a durable spool are not
lost: they are sent by the next dispatcher that opens the spool, and only an INFO line
says so.
"""

from __future__ import annotations

import atexit
import logging
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xpevents.dispatch.core import DispatchCore

__all__ = [
    "CLOSED_AT_EXIT",
    "held_in_memory",
    "report_abandoned",
    "report_flush_at_exit",
    "report_loop_stopped",
    "unclosed",
]

logger = logging.getLogger("xpevents.dispatch")

FIX = (
    "close it on its loop: `async with dispatcher:` in the app's lifespan, or "
    "`lifespan=xpevents.integrations.starlette.lifespan(dispatcher)`"
)


def held_in_memory(core: DispatchCore) -> int:
    """Visitors an owned memory spool still holds (0 for a durable or shared spool)."""
    if core.memory is None or not core.own_spool:
        return 0
    return core.memory.counts()[2]


unclosed: weakref.WeakSet[Any] = weakref.WeakSet()
"""AsyncDispatchers not closed yet (each has a ``_core``), reported at interpreter exit."""


def _report_unclosed_at_exit() -> None:
    for dispatcher in list(unclosed):
        report_abandoned(dispatcher._core, "reached interpreter exit")


atexit.register(_report_unclosed_at_exit)


def report_abandoned(core: DispatchCore, when: str) -> int:
    """An unclosed dispatcher is let go ``when`` ("was garbage-collected", at exit).

    Returns how many visitors were lost (logged once, counted as dropped). Never raises.
    """
    try:
        return _abandoned(core, when)
    except Exception:  # pragma: no cover - a finalizer must never raise
        return 0


def _abandoned(core: DispatchCore, when: str) -> int:
    if core.closed:
        return 0
    core.closed = True
    lost = held_in_memory(core)
    if lost:
        logger.warning(
            "%s %s with %d unsent visitor(s) in memory, never closed: they are lost; %s",
            core.owner,
            when,
            lost,
            FIX,
        )
        core.recorder.record_dropped("unsent_at_exit", lost)
    elif core.memory is None and core.store.durable:
        logger.info(
            "%s %s without being closed; its spool %s keeps what is unsent for the next start",
            core.owner,
            when,
            core.store.url,
        )
    return lost


def report_loop_stopped(core: DispatchCore) -> None:
    """The loop cancelled the senders of an unclosed dispatcher (``asyncio.run`` ended).

    Nothing is lost yet (the dispatcher may be used on another loop), so this only warns
    when visitors are held; the loss is counted at exit or garbage collection.
    """
    held = 0 if core.closed else held_in_memory(core)
    if held:
        logger.warning(
            "%s: its event loop stopped with %d unsent visitor(s) in memory; they are lost "
            "unless it is used on another loop; %s",
            core.owner,
            held,
            FIX,
        )


def report_flush_at_exit(core: DispatchCore, timeout: float) -> None:
    """The ``atexit`` flush of a BatchDispatcher: say what it waits for, as sentry-sdk does."""
    held = held_in_memory(core)
    if held:
        logger.info(
            "%s: flushing %d queued visitor(s) at exit (waiting up to %g s; atexit_timeout=)",
            core.owner,
            held,
            timeout,
        )


CLOSED_AT_EXIT: weakref.WeakSet[Any] = weakref.WeakSet()
"""Open BatchDispatchers: closed (flushed, within their ``atexit_timeout``) at exit."""


def _close_all_at_exit() -> None:
    for dispatcher in list(CLOSED_AT_EXIT):
        timeout = dispatcher._atexit_timeout
        if timeout is not None:
            try:
                report_flush_at_exit(dispatcher._core, timeout)
                dispatcher.close(timeout=timeout)
            except Exception:  # pragma: no cover - never let atexit fail
                logger.exception("closing %r at exit failed", dispatcher)


atexit.register(_close_all_at_exit)
