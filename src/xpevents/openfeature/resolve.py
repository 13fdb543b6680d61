"""From an xpevents decision to an OpenFeature resolution: keys, types, reasons, metadata.

Flag keys:

* ``flag`` — boolean: whether the flag is enabled; object: the flag's whole variables
  object;
* ``flag.variable`` — one variable, of the type the datafile declares (``boolean``,
  ``string``, ``integer``, ``double`` → float, ``json`` → object).

Reasons: ``TARGETING_MATCH`` when a rule (experiment or rollout rule) put the user in a
variation with the flag on; ``DISABLED`` when an experiment or a targeting rule put the
user in a variation with the flag off (the value is then Optimizely's: ``False``, the
variables' defaults); ``DEFAULT`` when no rule matched, or only the "everyone else" rule
with the flag off; ``ERROR`` with ``FLAG_NOT_FOUND``, ``TYPE_MISMATCH``, ``PARSE_ERROR``,
``TARGETING_KEY_MISSING`` or ``PROVIDER_NOT_READY`` (the caller's default is returned).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason

from xpevents.decide import Decision
from xpevents.decide.datafile import ProjectConfig

__all__ = ["error", "flag_metadata", "flag_signatures", "reason_of", "split_key", "typed_value"]

_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "boolean": (bool,),
    "string": (str,),
    "integer": (int,),
    "float": (float, int),
    "object": (dict, list),
}
_DECLARED: Final[dict[str, str]] = {
    "boolean": "boolean",
    "string": "string",
    "integer": "integer",
    "double": "float",
    "json": "object",
}


def split_key(key: str) -> tuple[str, str | None]:
    """``"flag.variable"`` → ``("flag", "variable")``; ``"flag"`` → ``("flag", None)``."""
    flag, dot, variable = key.partition(".")
    return flag, (variable if dot else None)


def error(default: Any, code: ErrorCode, message: str) -> FlagResolutionDetails[Any]:
    """The caller's default with an error code, as the spec wants."""
    return FlagResolutionDetails(
        value=default, reason=Reason.ERROR, error_code=code, error_message=message
    )


def reason_of(config: ProjectConfig, decision: Decision) -> Reason:
    """TARGETING_MATCH, DISABLED or DEFAULT (see the module docstring)."""
    if decision.variation_key is None or decision.rule_key is None:
        return Reason.DEFAULT
    if decision.enabled:
        return Reason.TARGETING_MATCH
    flag = config.flags.get(decision.flag_key or "")
    rollout = config.rollouts.get(flag.rollout_id) if flag is not None else None
    if (
        rollout is not None
        and rollout.experiments
        and (rollout.experiments[-1].key == decision.rule_key)
    ):
        return Reason.DEFAULT  # "everyone else", off: nobody targeted the user
    return Reason.DISABLED


def flag_metadata(config: ProjectConfig, decision: Decision) -> dict[str, str | bool]:
    """Rule key, experiment and variation ids and keys of a decision (what is known)."""
    meta: dict[str, str | bool] = {"enabled": decision.enabled}
    if decision.rule_key is not None:
        meta["rule_key"] = decision.rule_key
        experiment = config.experiments.get(decision.rule_key)
        if experiment is not None:
            meta["experiment_id"] = experiment.id
            if decision.variation_key is not None:
                variation = experiment.variations_by_key.get(decision.variation_key)
                if variation is not None:
                    meta["variation_id"] = variation.id
    if decision.variation_key is not None:
        meta["variation_key"] = decision.variation_key
    return meta


def typed_value(
    config: ProjectConfig,
    decision: Decision,
    flag: str,
    variable: str | None,
    wanted: str,
    default: Any,
) -> FlagResolutionDetails[Any] | Any:
    """The value for ``wanted`` (a resolution type), or an error resolution."""
    if variable is None:
        if wanted == "boolean":
            return decision.enabled
        if wanted == "object":
            return dict(decision.variables)
        return error(
            default,
            ErrorCode.TYPE_MISMATCH,
            f"flag {flag!r} alone is a boolean (enabled) or an object (its variables); "
            f"ask for '{flag}.<variable>' to get a {wanted}",
        )
    definition = config.flags[flag].variables.get(variable)
    if definition is None:
        known = ", ".join(sorted(config.flags[flag].variables)) or "none"
        return error(
            default,
            ErrorCode.FLAG_NOT_FOUND,
            f"flag {flag!r} has no variable {variable!r} (it has: {known})",
        )
    declared = _DECLARED.get(definition.type, definition.type)
    if declared != wanted and not (wanted == "float" and declared == "integer"):
        return error(
            default,
            ErrorCode.TYPE_MISMATCH,
            f"{flag}.{variable} is a {definition.type} variable, asked for as {wanted}",
        )
    value = decision.variables.get(variable)
    if not isinstance(value, _TYPES[wanted]) or isinstance(value, bool) != (wanted == "boolean"):
        return error(
            default,
            ErrorCode.PARSE_ERROR,
            f"{flag}.{variable}: the datafile's value {value!r} is not a valid {definition.type}",
        )
    if wanted == "float":
        assert isinstance(value, int | float)
        return float(value)
    return value


def attributes_of(context: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluation-context attributes usable as Optimizely attributes (others dropped)."""
    return {k: v for k, v in context.items() if isinstance(v, str | int | float | bool)}


def flag_signatures(datafile: str) -> dict[str, str]:
    """Per flag key, a canonical text of its definition, experiments, rollout, audiences.

    Two datafiles' signatures differ exactly for the flags a user of this provider could
    see change (``flags_changed`` of ``PROVIDER_CONFIGURATION_CHANGED``).
    """
    data = json.loads(datafile)
    experiments = {e.get("id"): e for e in data.get("experiments", [])}
    for group in data.get("groups", []):
        experiments.update({e.get("id"): e for e in group.get("experiments", [])})
    rollouts = {r.get("id"): r for r in data.get("rollouts", [])}
    audiences = {a.get("id"): a for a in data.get("typedAudiences", []) + data.get("audiences", [])}
    out: dict[str, str] = {}
    for flag in data.get("featureFlags", []):
        rules = [experiments.get(i) for i in flag.get("experimentIds", [])]
        rollout = rollouts.get(flag.get("rolloutId"))
        used = sorted(set(_ids(rules)) | set(_ids([rollout])))
        parts = [flag, rules, rollout, [audiences.get(a) for a in used]]
        out[str(flag.get("key"))] = json.dumps(parts, sort_keys=True, default=str)
    return out


def _ids(rules: list[Any]) -> list[str]:
    found: list[str] = []
    for rule in rules:
        for item in (rule or {}).get("experiments", [rule] if rule else []):
            found.extend(str(a) for a in (item or {}).get("audienceIds", []))
    return found
