"""The dispatcher contract: ``dispatch_event(event) -> None``."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class EventLike(Protocol):
    """Anything with the four attributes of an event: ours, or the official SDK's."""

    url: str
    params: Any
    http_verb: str
    headers: dict[str, str] | None


@runtime_checkable
class EventDispatcher(Protocol):
    """What a client needs from a dispatcher.

    ``dispatch_event`` takes an event (``url``, ``params``, ``http_verb``, ``headers``)
    and delivers it, now or later. It must not modify the event.
    """

    def dispatch_event(self, event: Any) -> None: ...
