"""A dispatcher that records events instead of sending them, for users' unit tests.

Use it wherever a dispatcher goes (``Client(datafile, event_dispatcher=recorder)``, or
under the official ``optimizely-sdk``) and assert on what the application would have
sent::

    recorder = RecordingDispatcher()
    client = Client(datafile, event_dispatcher=recorder)
    client.activate("checkout_button_color", "user-42")
    recorder.assert_impression(experiment_key="checkout_button_color", user_id="user-42")

Events are kept as handed over (never copied or modified); the readers below parse the
Optimizely event API payload each time they are called. Thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, TypeVar

from xpevents.dispatch.protocol import EventLike
from xpevents.errors import ConfigError

__all__ = ["RecordedConversion", "RecordedImpression", "RecordingDispatcher"]

_UNSET: Any = object()

R = TypeVar("R", "RecordedImpression", "RecordedConversion")


class RecordedImpression(NamedTuple):
    """One decision of an impression: experiment or rule, variation, flag, visitor."""

    user_id: str
    experiment_key: str | None
    variation_key: str | None
    flag_key: str | None
    rule_type: str | None
    enabled: bool | None
    attributes: dict[str, Any]


class RecordedConversion(NamedTuple):
    """One conversion: its event key, visitor, revenue, value and tags."""

    user_id: str
    event_key: str
    revenue: Any
    value: Any
    tags: dict[str, Any]
    attributes: dict[str, Any]


class RecordingDispatcher:
    """Records every event handed to :meth:`dispatch_event`; sends nothing.

    ``events`` is the list of recorded events in arrival order; :meth:`impressions` and
    :meth:`conversions` read them as tuples; the ``assert_*`` helpers raise
    ``AssertionError`` with what *was* recorded, so a failing test explains itself.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[EventLike] = []

    def __repr__(self) -> str:
        return f"RecordingDispatcher(events={len(self._events)})"

    def dispatch_event(self, event: EventLike) -> None:
        """Record ``event`` (anything with ``url``, ``params``, ``http_verb``, ``headers``)."""
        for name in ("url", "params"):
            if not hasattr(event, name):
                raise ConfigError(
                    f"RecordingDispatcher.dispatch_event(event={event!r}): the event has no "
                    f"{name!r}; pass a LogEvent or the official SDK's event object"
                )
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[EventLike]:
        """The recorded events, oldest first (a copy of the list; the events themselves)."""
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        """Forget every recorded event."""
        with self._lock:
            self._events.clear()

    def close(self, timeout: float | None = None) -> None:
        """Nothing to flush; present so code that closes its dispatcher works unchanged."""

    def flush(self, timeout: float | None = None) -> bool:
        """Nothing is ever pending: always ``True``."""
        return True

    def visitors(self) -> list[Mapping[str, Any]]:
        """Every visitor of every recorded payload, in order."""
        found: list[Mapping[str, Any]] = []
        for event in self.events:
            params = event.params
            visitors = params.get("visitors") if isinstance(params, Mapping) else None
            if isinstance(visitors, list):
                found.extend(v for v in visitors if isinstance(v, Mapping))
        return found

    def impressions(self) -> list[RecordedImpression]:
        """Every decision of every recorded impression."""
        return [
            _impression(visitor, decision)
            for visitor, snapshot in _snapshots(self.visitors())
            for decision in _items(snapshot, "decisions")
        ]

    def conversions(self) -> list[RecordedConversion]:
        """Every recorded conversion (events other than ``campaign_activated``)."""
        return [
            _conversion(visitor, event)
            for visitor, snapshot in _snapshots(self.visitors())
            for event in _items(snapshot, "events")
            if event.get("key") != "campaign_activated"
        ]

    def assert_impression(
        self,
        *,
        user_id: str | None = None,
        experiment_key: str | None = None,
        variation_key: str | None = None,
        flag_key: str | None = None,
        count: int | None = None,
    ) -> list[RecordedImpression]:
        """Assert that impressions matching every given field were recorded.

        ``count`` asks for exactly that many (``count=0``: none). Returns the matches.
        """
        wanted = {
            "user_id": user_id,
            "experiment_key": experiment_key,
            "variation_key": variation_key,
            "flag_key": flag_key,
        }
        return _check("impression", self.impressions(), wanted, count)

    def assert_conversion(
        self,
        event_key: str | None = None,
        *,
        user_id: str | None = None,
        revenue: Any = _UNSET,
        count: int | None = None,
    ) -> list[RecordedConversion]:
        """Assert that conversions matching every given field were recorded."""
        wanted: dict[str, Any] = {"event_key": event_key, "user_id": user_id}
        if revenue is not _UNSET:
            wanted["revenue"] = revenue
        return _check("conversion", self.conversions(), wanted, count)

    def assert_nothing_sent(self) -> None:
        """Assert that no event at all was recorded."""
        events = self.events
        if events:
            raise AssertionError(f"expected no events, recorded {len(events)}: {events!r}")


def _items(container: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = container.get(key)
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _snapshots(
    visitors: list[Mapping[str, Any]],
) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    for visitor in visitors:
        for snapshot in _items(visitor, "snapshots"):
            yield visitor, snapshot


def _attributes(visitor: Mapping[str, Any]) -> dict[str, Any]:
    return {str(a.get("key")): a.get("value") for a in _items(visitor, "attributes")}


def _impression(visitor: Mapping[str, Any], decision: Mapping[str, Any]) -> RecordedImpression:
    metadata = decision.get("metadata")
    meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
    return RecordedImpression(
        user_id=str(visitor.get("visitor_id")),
        experiment_key=meta.get("rule_key"),
        variation_key=meta.get("variation_key"),
        flag_key=meta.get("flag_key"),
        rule_type=meta.get("rule_type"),
        enabled=meta.get("enabled"),
        attributes=_attributes(visitor),
    )


def _conversion(visitor: Mapping[str, Any], event: Mapping[str, Any]) -> RecordedConversion:
    tags = event.get("tags")
    return RecordedConversion(
        user_id=str(visitor.get("visitor_id")),
        event_key=str(event.get("key")),
        revenue=event.get("revenue"),
        value=event.get("value"),
        tags=dict(tags) if isinstance(tags, Mapping) else {},
        attributes=_attributes(visitor),
    )


def _check(kind: str, recorded: list[R], wanted: dict[str, Any], count: int | None) -> list[R]:
    fields = {k: v for k, v in wanted.items() if v is not None or k == "revenue"}
    matches = [r for r in recorded if all(getattr(r, k) == v for k, v in fields.items())]
    if (count is None and matches) or (count is not None and len(matches) == count):
        return matches
    expected = "at least one" if count is None else f"exactly {count}"
    shown = "\n  ".join(repr(r) for r in recorded[:20]) or "(none)"
    raise AssertionError(
        f"expected {expected} {kind}(s) with {fields}, found {len(matches)}; "
        f"recorded {len(recorded)}:\n  {shown}"
    )
