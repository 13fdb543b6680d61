"""Notification listeners: ``decision``, ``activate``, ``track`` and ``log_event``.

A :class:`NotificationCenter` belongs to one :class:`~xpevents.Client`
(``client.notification_center``). Listeners are called synchronously, in the caller's
thread, in the order they were added, with the arguments of the official optimizely-sdk
(so listeners written for it port unchanged):

``decision`` — ``(type, user_id, attributes, decision_info)``
    ``type`` is one of ``"ab-test"``, ``"feature-test"`` (``get_variation`` /
    ``activate``), ``"feature"`` (``is_feature_enabled``), ``"feature-variable"``,
    ``"all-feature-variables"`` and ``"flag"`` (``decide``); ``attributes`` is the
    user's attribute dict (``{}`` when none); ``decision_info`` is a dict whose keys
    depend on the type, exactly as in the official SDK (for ``"flag"``: ``flag_key``,
    ``enabled``, ``variables``, ``variation_key``, ``rule_key``, ``reasons``,
    ``decision_event_dispatched``, ``experiment_id``, ``variation_id``).
``activate`` — ``(experiment, user_id, attributes, variation, event)``
    sent for every impression; ``experiment`` and ``variation`` are the datafile
    objects (:class:`~xpevents.decide.datafile.Experiment`,
    :class:`~xpevents.decide.datafile.Variation`),
    ``attributes`` may be ``None``, ``event`` is a dict with ``url``, ``params``,
    ``http_verb`` and ``headers``.
``track`` — ``(event_key, user_id, attributes, event_tags, event)``
    sent for every conversion; ``attributes`` and ``event_tags`` may be ``None``,
    ``event`` is the same kind of dict as for ``activate``.
``log_event`` — ``(log_event,)``
    the :class:`~xpevents.LogEvent` about to be handed to the dispatcher.
``optimizely_config_update`` — ``()``
    sent after each new datafile is swapped in (the official
    ``OPTIMIZELY_CONFIG_UPDATE``, which has no arguments either), in the config
    manager's thread.

The official enum strings (``"ACTIVATE:experiment, user_id, attributes, variation, event"``,
``"DECISION:type, user_id, attributes, decision_info"``, ``"TRACK:event_key, user_id,
attributes, event_tags, event"``, ``"LOG_EVENT:log_event"``, ``"OPTIMIZELY_CONFIG_UPDATE"``)
are accepted wherever a type is expected, as is :class:`NotificationType`.

A listener that raises is logged (with its traceback) and never breaks the caller or the
other listeners. Listeners must not modify the payloads they receive.
"""

from __future__ import annotations

import enum
import itertools
import logging
import threading
from collections.abc import Callable, Collection
from typing import Any, Final

__all__ = ["NotificationCenter", "NotificationType"]

logger = logging.getLogger("xpevents.notifications")


class NotificationType(enum.StrEnum):
    """The notification types a listener can subscribe to."""

    DECISION = "decision"
    ACTIVATE = "activate"
    TRACK = "track"
    LOG_EVENT = "log_event"
    OPTIMIZELY_CONFIG_UPDATE = "optimizely_config_update"


_OFFICIAL_NAMES: Final[dict[str, NotificationType]] = {
    "DECISION:type, user_id, attributes, decision_info": NotificationType.DECISION,
    "ACTIVATE:experiment, user_id, attributes, variation, event": NotificationType.ACTIVATE,
    "TRACK:event_key, user_id, attributes, event_tags, event": NotificationType.TRACK,
    "LOG_EVENT:log_event": NotificationType.LOG_EVENT,
}

Listener = Callable[..., Any]


def parse_notification_type(value: object) -> NotificationType | None:
    """Return the :class:`NotificationType` for ``value`` (ours or the official string)."""
    if isinstance(value, NotificationType):
        return value
    if not isinstance(value, str):
        return None
    official = _OFFICIAL_NAMES.get(value)
    if official is not None:
        return official
    try:
        return NotificationType(value.lower())
    except ValueError:
        return None


class NotificationCenter:
    """Holds listeners by type and calls them.

    Thread-safe: listeners are stored as immutable tuples replaced under a lock, so
    sending never takes the lock and never sees a half-updated list. Sending to a type
    without listeners costs one dict lookup.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._listeners: dict[NotificationType, tuple[tuple[int, Listener], ...]] = {
            t: () for t in NotificationType
        }
        self._active: set[NotificationType] = set()  # types with listeners, kept in step

    def _set(self, kind: NotificationType, listeners: tuple[tuple[int, Listener], ...]) -> None:
        """Replace the listeners of ``kind`` (under the lock)."""
        self._listeners[kind] = listeners
        if listeners:
            self._active.add(kind)
        else:
            self._active.discard(kind)

    def add_notification_listener(self, notification_type: object, callback: Listener) -> int:
        """Add ``callback`` for ``notification_type``; return its id for removal.

        Returns ``-1`` (and logs why) when the type is unknown, the callback is not
        callable, or the same callback is already registered for that type, as the
        official SDK does.
        """
        kind = parse_notification_type(notification_type)
        if kind is None:
            logger.error(
                "Invalid notification_type %r: expected one of %s. Not adding listener.",
                notification_type,
                ", ".join(t.value for t in NotificationType),
            )
            return -1
        if not callable(callback):
            logger.error("Notification callback %r is not callable. Not adding it.", callback)
            return -1
        with self._lock:
            current = self._listeners[kind]
            if any(cb == callback for _, cb in current):
                logger.error("Listener %r has already been added for %s.", callback, kind.value)
                return -1
            listener_id = next(self._ids)
            self._set(kind, (*current, (listener_id, callback)))
        return listener_id

    def remove_notification_listener(self, notification_id: int) -> bool:
        """Remove the listener with this id; return whether one was removed."""
        with self._lock:
            for kind, current in self._listeners.items():
                kept = tuple(item for item in current if item[0] != notification_id)
                if len(kept) != len(current):
                    self._set(kind, kept)
                    return True
        return False

    def clear_notification_listeners(self, notification_type: object) -> None:
        """Remove every listener of ``notification_type``."""
        kind = parse_notification_type(notification_type)
        if kind is None:
            logger.error(
                "Invalid notification_type %r. Not removing any listener.", notification_type
            )
            return
        with self._lock:
            self._set(kind, ())

    def clear_all_notification_listeners(self) -> None:
        """Remove every listener of every type."""
        with self._lock:
            for kind in NotificationType:
                self._set(kind, ())

    # Deprecated official aliases, kept so ported code runs.
    clear_notifications = clear_notification_listeners
    clear_all_notifications = clear_all_notification_listeners

    def has_listeners(self, notification_type: NotificationType) -> bool:
        """Whether anyone listens to ``notification_type`` (lets callers skip building args)."""
        return notification_type in self._active

    def active_types(self) -> Collection[NotificationType]:
        """The types that have listeners, as a live read-only view (for hot paths)."""
        return self._active

    def listener_check(self) -> Callable[[NotificationType], bool]:
        """:meth:`has_listeners` as a bound C method, for hot paths that ask on every call.

        It stays valid for the center's lifetime and sees every later change.
        """
        return self._active.__contains__

    def send_notifications(self, notification_type: object, *args: Any) -> None:
        """Call every listener of ``notification_type`` with ``args``.

        A listener that raises is logged and skipped; the exception never propagates.
        """
        kind = parse_notification_type(notification_type)
        if kind is None:
            logger.error("Invalid notification_type %r. Not notifying.", notification_type)
            return
        for listener_id, callback in self._listeners[kind]:
            try:
                callback(*args)
            except Exception:
                logger.exception(
                    "Notification listener %d (%r) for %s raised; ignored.",
                    listener_id,
                    callback,
                    kind.value,
                )
