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
    "WireHoldout",
    "WireIntegration",
    "WireRollout",
    "WireTraffic",
    "WireVariable",
    "WireVariableUsage",
    "WireVariation",
    "decode",
]


class WireVariableUsage(msgspec.Struct, frozen=True):
    id: str
    value: Any  # the official SDK casts whatever is there (a non-string may give None)


class WireVariation(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    key: str
    feature_enabled: bool | None = None
    variables: tuple[WireVariableUsage, ...] = ()


class WireTraffic(msgspec.Struct, frozen=True, rename="camel"):
    # Required by the official schema in experiments and groups (the builder checks it);
    # in rollout rules, which the schema does not cover, a range without ``endOfRange`` is
    # skipped and one without ``entityId`` buckets into nothing, as in optimizely-sdk.
    entity_id: str | msgspec.UnsetType = msgspec.UNSET
    end_of_range: int | msgspec.UnsetType = msgspec.UNSET


class WireExperiment(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    key: str
    status: str
    layer_id: str
    audience_ids: tuple[str, ...]
    variations: tuple[WireVariation, ...]
    forced_variations: dict[str, Any]  # the schema says "object"; a non-string value is ignored
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
    default_value: Any  # an object (json) or a number: cast as official (None if it fails)
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


class WireHoldout(msgspec.Struct, frozen=True, rename="camel"):
    """A holdout: global (``holdouts``) or scoped to rules (``localHoldouts``)."""

    id: str
    key: str
    status: str
    variations: tuple[WireVariation, ...]
    traffic_allocation: tuple[WireTraffic, ...]
    audience_ids: tuple[str, ...]
    audience_conditions: Any = None
    included_rules: tuple[str, ...] | None = None


class WireIntegration(msgspec.Struct, frozen=True, rename="camel"):
    key: str
    host: str | None = None
    public_key: str | None = None


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
    # The official schema requires these five arrays: absent (UNSET) makes
    # the datafile unusable (see acceptance.py); the model treats them as empty.
    groups: tuple[WireGroup, ...] | msgspec.UnsetType = msgspec.UNSET
    experiments: tuple[WireExperiment, ...] | msgspec.UnsetType = msgspec.UNSET
    events: tuple[WireEvent, ...] | msgspec.UnsetType = msgspec.UNSET
    audiences: tuple[WireAudience, ...] | msgspec.UnsetType = msgspec.UNSET
    attributes: tuple[WireAttribute, ...] | msgspec.UnsetType = msgspec.UNSET
    feature_flags: tuple[WireFlag, ...] = ()
    rollouts: tuple[WireRollout, ...] = ()
    typed_audiences: tuple[WireAudience, ...] = ()
    integrations: tuple[WireIntegration, ...] = ()
    holdouts: tuple[WireHoldout, ...] = ()
    # kept raw: the official SDK skips (with an error) an entry without includedRules,
    # whatever else it lacks; the builder converts the others
    local_holdouts: tuple[dict[str, Any], ...] = ()


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


_ENCODER: Final = msgspec.json.Encoder()


def decode(datafile: str | bytes | Mapping[str, Any]) -> WireDatafile:
    """Decode JSON text or a parsed dict into wire structs; :class:`DatafileError` if not.

    A dict is encoded to JSON first, so that it meets exactly the checks JSON text
    meets: a string no encoder can write (a lone surrogate, which would reach murmur3
    and the event encoder), a value JSON cannot hold, or nesting deeper than the
    decoder's limit is refused here, never later in a decision.
    """
    if isinstance(datafile, Mapping):
        try:
            datafile = _ENCODER.encode(datafile)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            # UnicodeEncodeError is a ValueError: a lone surrogate somewhere
            raise DatafileError(f"$: the datafile cannot be written as JSON: {exc}") from None
    elif not isinstance(datafile, str | bytes | bytearray | memoryview):
        raise DatafileError(
            f"$: expected a datafile as str, bytes or dict, got {type(datafile).__name__}"
        )
    try:
        return _DECODER.decode(datafile)
    except msgspec.ValidationError as exc:
        raise DatafileError(_reformat(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise DatafileError(f"$: invalid JSON: {exc}") from None
    except (RecursionError, UnicodeError) as exc:
        raise DatafileError(f"$: invalid JSON: {exc}") from None
