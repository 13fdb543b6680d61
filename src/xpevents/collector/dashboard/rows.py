"""Rows of the dashboard's live table, as plain strings (rendered by HTML or by the JS).

An event row shows the stored event with its experiment and variation **by key**
(``metadata.rule_key`` / ``metadata.variation_key`` when the SDK sent them, else the
datafile's keys when the collector knows it, else the ids). A request row is a request
that was not a plain acceptance (rejected, injected fault, or carrying duplicates).
"""

from __future__ import annotations

import time
from typing import Any, Final

import msgspec

from xpevents.decide.datafile import ProjectConfig
from xpevents.serving.schema import ACTIVATE_EVENT_KEY

__all__ = ["event_row", "request_row"]

_encode: Final = msgspec.json.Encoder().encode


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def _keys(event: dict[str, Any], config: ProjectConfig | None) -> tuple[str, str]:
    exp_id, var_id = event.get("experiment_id"), event.get("variation_id")
    metadata = event.get("metadata") or {}
    exp_key = metadata.get("rule_key") or ""
    var_key = metadata.get("variation_key") or ""
    experiment = None if config is None or exp_id is None else config.experiments_by_id.get(exp_id)
    if experiment is not None:
        exp_key = exp_key or experiment.key
        variation = experiment.variations_by_id.get(var_id or "")
        var_key = var_key or (variation.key if variation is not None else "")
    return str(exp_key or exp_id or ""), str(var_key or var_id or "")


def _amount(event: dict[str, Any]) -> str:
    parts = []
    if event.get("revenue") is not None:
        parts.append(f"revenue {event['revenue']}")
    if event.get("value") is not None:
        parts.append(f"value {event['value']:g}")
    return ", ".join(parts)


def event_row(event: dict[str, Any], config: ProjectConfig | None) -> dict[str, Any]:
    """Display fields of one stored event (from ``EventStore.events``)."""
    impression = event["key"] == ACTIVATE_EVENT_KEY
    experiment, variation = _keys(event, config) if impression else ("", "")
    client = " ".join(str(p) for p in (event.get("client_name"), event.get("client_version")) if p)
    raw = {
        "account_id": event.get("account_id"),
        "project_id": event.get("project_id"),
        "revision": event.get("revision"),
        "client_name": event.get("client_name"),
        "client_version": event.get("client_version"),
        "region": event.get("region"),
        "visitor": event.get("visitor"),
    }
    return {
        "id": event["id"],
        "at": event["received_at"],
        "time": _clock(event["received_at"]),
        "type": "impression" if impression else "conversion",
        "visitor": event["visitor_id"],
        "experiment": experiment,
        "variation": variation,
        "key": event["key"],
        "amount": _amount(event),
        "client": client,
        "status": "accepted",
        "raw": msgspec.json.format(_encode(raw), indent=2).decode(),
    }


def request_row(request: dict[str, Any]) -> dict[str, Any]:
    """Display fields of one recorded request (from :class:`Timeline`)."""
    status = request["status"]
    detail = request["error"]
    if request["outcome"] == "duplicate":
        detail = f"{request['duplicates']} duplicate event(s), {request['stored']} new"
    return {
        "seq": request["seq"],
        "at": request["received_at"],
        "time": _clock(request["received_at"]),
        "type": "request",
        "visitor": "",
        "experiment": "",
        "variation": "",
        "key": request["path"],
        "amount": "",
        "client": "",
        "status": f"{request['outcome']} ({'no response' if status is None else status})",
        "outcome": request["outcome"],
        "raw": detail,
    }
