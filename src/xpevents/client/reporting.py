"""Event → dispatcher → listeners: what the client does once it has decided.

Every impression and conversion goes the same way, in the official SDK's order: the
``log_event`` listeners see the :class:`~xpevents.LogEvent`, the dispatcher gets it,
then the ``activate`` or ``track`` listeners get the event as the official dict
(``url``, ``params``, ``http_verb``, ``headers``). A payload is built only when someone
listens: :meth:`Reporter.listens` is one call on the hot path, run for every
``activate``, ``track`` and ``decide``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from xpevents.client.notifications import NotificationCenter, NotificationType
from xpevents.dispatch.gate import RefusalGate
from xpevents.errors import DispatchError

if TYPE_CHECKING:
    from xpevents.decide.datafile import EventDef, Experiment, Variation
    from xpevents.dispatch.protocol import EventDispatcher
    from xpevents.events.builder import EventBuilder
    from xpevents.events.model import LogEvent

__all__ = ["Reporter"]

_DECISION = NotificationType.DECISION
_ACTIVATE = NotificationType.ACTIVATE
_TRACK = NotificationType.TRACK
_LOG_EVENT = NotificationType.LOG_EVENT


def _event_dict(event: LogEvent) -> dict[str, Any]:
    """The event as the official ``activate`` and ``track`` listeners receive it."""
    return {
        "url": event.url,
        "params": event.params,
        "http_verb": event.http_verb,
        "headers": event.headers,
    }


class Reporter:
    """Builds, dispatches and announces the events of one client."""

    __slots__ = (
        "_builder",
        "_dispatcher",
        "_gate",
        "_log",
        "_send",
        "_strict",
        "active",
        "listens",
    )

    def __init__(
        self,
        builder: EventBuilder,
        dispatcher: EventDispatcher,
        center: NotificationCenter,
        *,
        strict: bool,
        log: logging.Logger,
    ) -> None:
        self._builder = builder
        self._dispatcher = dispatcher
        self._strict = strict
        self._log = log
        self._send = center.send_notifications
        self.listens = center.listener_check()
        """``listens(kind)``: whether ``kind`` has listeners (build its payload only then)."""
        self.active: Collection[NotificationType] = center.active_types()
        """The notification types that have listeners now (empty: nobody listens)."""
        gate = getattr(dispatcher, "refusal_gate", None)
        self._gate = gate if isinstance(gate, RefusalGate) else None

    def decision(self, kind: str, user_id: str, attributes: Any, info: dict[str, Any]) -> None:
        """Tell the ``decision`` listeners (check :attr:`listens` before building ``info``)."""
        self._send(_DECISION, kind, user_id, attributes, info)

    def impression(
        self,
        experiment: Experiment | None,
        variation: Variation | None,
        user_id: str,
        attributes: Any,
        flag_key: str,
        rule_key: str,
        rule_type: str,
        enabled: bool,
    ) -> None:
        """Build and send the impression of a decision, then tell ``activate`` listeners."""
        gate = self._gate
        if gate is not None and gate.shut and not self.active and gate.refuse():
            return  # the full queue refuses it: counted, not built (xpevents.dispatch.gate)
        try:
            event = self._builder.impression(
                experiment,
                variation,
                user_id,
                attributes,
                flag_key=flag_key,
                rule_key=rule_key,
                rule_type=rule_type,
                enabled=enabled,
            )
        except Exception:  # pragma: no cover - defensive: never break the caller
            self._log.exception("Could not build the impression for user %r.", user_id)
            return
        self._dispatch(event)
        if self.listens(_ACTIVATE):
            self._send(_ACTIVATE, experiment, user_id, attributes, variation, _event_dict(event))

    def conversion(
        self, event_def: EventDef, user_id: str, attributes: Any, event_tags: Any
    ) -> None:
        """Build and send the conversion ``track`` asked for, then tell ``track`` listeners."""
        gate = self._gate
        if gate is not None and gate.shut and not self.active and gate.refuse():
            return
        try:
            event = self._builder.conversion(event_def, user_id, attributes, event_tags)
        except Exception:  # pragma: no cover - defensive
            self._log.exception("Could not build the conversion %r for %r.", event_def.key, user_id)
            return
        self._dispatch(event)
        if self.listens(_TRACK):
            self._send(_TRACK, event_def.key, user_id, attributes, event_tags, _event_dict(event))

    def _dispatch(self, event: LogEvent) -> None:
        if self.listens(_LOG_EVENT):
            self._send(_LOG_EVENT, event)
        try:
            self._dispatcher.dispatch_event(event)
        except Exception as exc:
            if self._strict:
                raise DispatchError(
                    f"event dispatcher {self._dispatcher!r} raised {exc!r}",
                    reason="dispatcher_raised",
                    url=event.url,
                ) from exc
            self._log.exception(
                "Event dispatcher %r raised; the event to %s is lost.", self._dispatcher, event.url
            )
