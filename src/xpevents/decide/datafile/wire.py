"""The datafile as it is on the wire: msgspec structs that mirror the JSON.

These structs only check types and shapes (msgspec does it in C, in one pass); every
cross-reference and every tolerated oddity is handled when the public model is built
(:mod:`~xpevents.decide.datafile.build`). Keys are camelCase on the wire.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from xpevents.errors import DatafileError

__all__ = [
    "WireAttribute",
    "WireAudience",
    "WireDatafile",
    "WireEvent",
    "WireExperiment",
    "WireFlag",
    "WireGroup",
    "WireRollout",
    "WireTraffic",
    "WireVariable",
    "WireVariableUsage",
    "WireVariation",
    "decode",
]


class WireVariableUsage(msgspec.Struct, frozen=True):
    id: str
    value: str


class WireVariation(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    key: str
    feature_enabled: bool | None = None
    variables: tuple[WireVariableUsage, ...] = ()


class WireTraffic(msgspec.Struct, frozen=True, rename="camel"):
    entity_id: str
    end_of_range: int


class WireExperiment(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    key: str
    status: str
    layer_id: str
    audience_ids: tuple[str, ...]
    variations: tuple[WireVariation, ...]
    forced_variations: dict[str, str]
    traffic_allocation: tuple[WireTraffic, ...]
    audience_conditions: Any = None
    group_id: str | None = None
    group_policy: str | None = None
    type: str | None = None


class WireGroup(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    policy: str
    experiments: tuple[WireExperiment, ...]
    traffic_allocation: tuple[WireTraffic, ...]


class WireVariable(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    key: str
    type: str
    default_value: str
    sub_type: str | None = None


class WireFlag(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    key: str
    experiment_ids: tuple[str, ...]
    rollout_id: str
    variables: tuple[WireVariable, ...]


class WireRollout(msgspec.Struct, frozen=True):
    id: str
    experiments: tuple[WireExperiment, ...]


class WireEvent(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    key: str
    experiment_ids: tuple[str, ...]


class WireAttribute(msgspec.Struct, frozen=True):
    id: str
    key: str


class WireAudience(msgspec.Struct, frozen=True):
    id: str
    name: str
    conditions: Any


class WireDatafile(msgspec.Struct, frozen=True, rename="camel"):
    version: str
    account_id: str
    project_id: str
    revision: str
    anonymize_ip: bool = msgspec.field(default=False, name="anonymizeIP")
    bot_filtering: bool | None = None
    send_flag_decisions: bool = False
    region: str | None = None
    sdk_key: str | None = None
    environment_key: str | None = None
    groups: tuple[WireGroup, ...] = ()
    experiments: tuple[WireExperiment, ...] = ()
    feature_flags: tuple[WireFlag, ...] = ()
    rollouts: tuple[WireRollout, ...] = ()
    events: tuple[WireEvent, ...] = ()
    attributes: tuple[WireAttribute, ...] = ()
    audiences: tuple[WireAudience, ...] = ()
    typed_audiences: tuple[WireAudience, ...] = ()


_DECODER: Final = msgspec.json.Decoder(WireDatafile)

_MSGSPEC_AT = re.compile(r"^(?P<problem>.*?) - at `(?P<path>[^`]*)`(?: in `(?P<parent>[^`]*)`)?$")


def _reformat(message: str) -> str:
    """Turn a msgspec message into ``$.path: problem``."""
    match = _MSGSPEC_AT.match(message)
    if match:
        problem, path, parent = match["problem"], match["path"], match["parent"]
        if parent is not None:  # e.g. "Expected `str` - at `key` in `$`" (a dict key)
            path = f"{parent} (a key)"
    else:
        problem, path = message, "$"
    missing = re.match(r"Object missing required field `([^`]*)`", problem)
    if missing:
        return f"{path}.{missing[1]}: missing required field"
    problem = problem.replace("`", "")
    if problem:
        problem = problem[0].lower() + problem[1:]
    return f"{path}: {problem}"


def decode(datafile: str | bytes | Mapping[str, Any]) -> WireDatafile:
    """Decode JSON text or a parsed dict into wire structs; :class:`DatafileError` if not."""
    if isinstance(datafile, str | bytes | bytearray | memoryview):
        try:
            return _DECODER.decode(datafile)
        except msgspec.ValidationError as exc:
            raise DatafileError(_reformat(str(exc))) from None
        except msgspec.DecodeError as exc:
            raise DatafileError(f"$: invalid JSON: {exc}") from None
    if isinstance(datafile, Mapping):
        try:
            return msgspec.convert(dict(datafile), type=WireDatafile)
        except msgspec.ValidationError as exc:
            raise DatafileError(_reformat(str(exc))) from None
    raise DatafileError(
        f"$: expected a datafile as str, bytes or dict, got {type(datafile).__name__}"
    )
