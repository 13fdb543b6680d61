"""NotificationCenter: types (ours and the official strings), ids, removal, failures."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from xpevents.client.notifications import NotificationCenter, NotificationType


def test_add_send_remove() -> None:
    center = NotificationCenter()
    calls: list[tuple[Any, ...]] = []

    def listener(*args: Any) -> None:
        calls.append(args)

    listener_id = center.add_notification_listener("track", listener)
    assert listener_id > 0
    center.send_notifications(NotificationType.TRACK, "purchase", "u1", None, None, {})
    assert calls == [("purchase", "u1", None, None, {})]
    assert center.remove_notification_listener(listener_id)
    assert not center.remove_notification_listener(listener_id)
    center.send_notifications("track", "x")
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("official", "ours"),
    [
        ("ACTIVATE:experiment, user_id, attributes, variation, event", NotificationType.ACTIVATE),
        ("DECISION:type, user_id, attributes, decision_info", NotificationType.DECISION),
        ("TRACK:event_key, user_id, attributes, event_tags, event", NotificationType.TRACK),
        ("LOG_EVENT:log_event", NotificationType.LOG_EVENT),
    ],
)
def test_official_type_strings(official: str, ours: NotificationType) -> None:
    from optimizely.helpers import enums

    assert official in {
        enums.NotificationTypes.ACTIVATE,
        enums.NotificationTypes.DECISION,
        enums.NotificationTypes.TRACK,
        enums.NotificationTypes.LOG_EVENT,
    }
    center = NotificationCenter()
    seen: list[Any] = []
    assert center.add_notification_listener(official, seen.append) > 0
    center.send_notifications(ours, 1)
    assert seen == [1]
    center.clear_notification_listeners(official)
    center.send_notifications(ours, 2)
    assert seen == [1]


def test_invalid_type_and_duplicates() -> None:
    center = NotificationCenter()

    def listener(*_: Any) -> None:
        return None

    assert center.add_notification_listener("nope", listener) == -1
    assert center.add_notification_listener("decision", listener) > 0
    assert center.add_notification_listener("decision", listener) == -1
    assert center.add_notification_listener("decision", "not callable") == -1  # type: ignore[arg-type]


def test_raising_listener_is_logged_and_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    center = NotificationCenter()
    seen: list[int] = []

    def broken(*_: Any) -> None:
        raise RuntimeError("listener bug")

    center.add_notification_listener("log_event", broken)
    center.add_notification_listener("log_event", lambda value: seen.append(value))
    with caplog.at_level(logging.ERROR, logger="xpevents.notifications"):
        center.send_notifications("log_event", 7)
    assert seen == [7]
    assert "listener bug" in caplog.text


def test_clear_all() -> None:
    center = NotificationCenter()
    for kind in NotificationType:
        center.add_notification_listener(kind, lambda *a: None)
        assert center.has_listeners(kind)
    center.clear_all_notification_listeners()
    assert not any(center.has_listeners(kind) for kind in NotificationType)
