"""``client.get_optimizely_config()``: the official ``OptimizelyConfig`` view of a datafile.

The same objects and attributes as optimizely-sdk 5.7.0 (``optimizely.optimizely_config``):
``revision``, ``sdk_key``, ``environment_key``, ``experiments_map`` (experiment key →
:class:`OptimizelyExperiment`, group experiments included), ``features_map`` (flag key →
:class:`OptimizelyFeature` with ``experiment_rules``, ``delivery_rules``,
``variables_map`` and the deprecated ``experiments_map``), ``attributes``, ``events``,
``audiences`` (typed audiences first, then the others) and ``get_datafile()`` (the
datafile's JSON text). Variable values are the datafile's strings, as in the official
SDK: a variation's own values apply in experiment rules when the variation has the
feature enabled; delivery rules show the flag's defaults. An experiment's ``audiences``
is its audience conditions written out with audience names
(``'"us" OR ("mobile" AND "beta")'``).

Built from the datafile's JSON once per revision (the client caches it), never on the
decision path. ``tests/test_optimizely_config.py`` compares every attribute with the
official SDK on the fixture and the generated datafiles.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "OptimizelyAttribute",
    "OptimizelyAudience",
    "OptimizelyConfig",
    "OptimizelyEvent",
    "OptimizelyExperiment",
    "OptimizelyFeature",
    "OptimizelyVariable",
    "OptimizelyVariation",
    "optimizely_config",
]

_OPERATORS: Final = ("and", "or", "not")
_DUMMY_AUDIENCE: Final = "$opt_dummy_audience"


@dataclass(slots=True)
class OptimizelyVariable:
    """A flag variable: ``value`` is the datafile's string."""

    id: str
    key: str
    type: str
    value: Any


@dataclass(slots=True)
class OptimizelyVariation:
    """A variation and its variable values."""

    id: str
    key: str
    feature_enabled: bool | None
    variables_map: dict[str, OptimizelyVariable]


@dataclass(slots=True)
class OptimizelyExperiment:
    """An experiment or a delivery rule; ``audiences`` written out with names."""

    id: str
    key: str
    variations_map: dict[str, OptimizelyVariation]
    audiences: str = ""


@dataclass(slots=True)
class OptimizelyFeature:
    """A flag: its rules and variables."""

    id: str
    key: str
    experiments_map: dict[str, OptimizelyExperiment]
    variables_map: dict[str, OptimizelyVariable]
    delivery_rules: list[OptimizelyExperiment] = field(default_factory=list)
    experiment_rules: list[OptimizelyExperiment] = field(default_factory=list)


@dataclass(slots=True)
class OptimizelyAttribute:
    """An attribute of the project."""

    id: str
    key: str


@dataclass(slots=True)
class OptimizelyEvent:
    """A conversion event and the experiments it belongs to."""

    id: str
    key: str
    experiment_ids: list[str]


@dataclass(slots=True)
class OptimizelyAudience:
    """An audience; ``conditions`` is JSON text (typed audiences' are encoded, like the
    official SDK's)."""

    id: str | None
    name: str | None
    conditions: Any


@dataclass(slots=True)
class OptimizelyConfig:
    """The project as the official ``OptimizelyConfig`` shows it."""

    revision: str
    experiments_map: dict[str, OptimizelyExperiment]
    features_map: dict[str, OptimizelyFeature]
    _datafile: str | None = None
    sdk_key: str = ""
    environment_key: str = ""
    attributes: list[OptimizelyAttribute] = field(default_factory=list)
    events: list[OptimizelyEvent] = field(default_factory=list)
    audiences: list[OptimizelyAudience] = field(default_factory=list)

    def get_datafile(self) -> str | None:
        """The datafile's JSON text."""
        return self._datafile


def _quoted(audience_id: Any, names: Mapping[str, str]) -> str:
    name = names.get(audience_id, audience_id) if isinstance(audience_id, str) else audience_id
    return f'"{name}"'


def describe_conditions(conditions: Sequence[Any], names: Mapping[str, str]) -> str:
    """Audience conditions as text: ``["or", "1", ["and", "2", "3"]]`` →
    ``'"one" OR ("two" AND "three")'`` (the official SDK's wording and spacing)."""
    count = len(conditions)
    if count == 0:
        return ""
    head = conditions[0]
    if count == 1:
        return "" if head in _OPERATORS else _quoted(head, names)
    second = conditions[1]
    single = count == 2 and head in _OPERATORS and not isinstance(second, list)
    if single and second not in _OPERATORS:
        return ("NOT " if head == "not" else "") + _quoted(second, names)
    parts: list[str] = []
    operator = "OR"
    for index, item in enumerate(conditions):
        last = index == count - 1
        if not isinstance(item, list) and item in _OPERATORS:
            operator = item.upper()
        elif isinstance(item, list):
            inner = describe_conditions(item, names)
            parts.append(f"{operator} ({inner})" if last else f"({inner}) ")
        elif last:
            parts.append(f"{operator} {_quoted(item, names)}")
        elif index == count - 2:
            parts.append(_quoted(item, names) + " ")
        else:
            parts.append(f"{_quoted(item, names)} {operator} ")
    return "".join(parts)


def _variable_type(variable: Mapping[str, Any]) -> str:
    kind = str(variable.get("type"))
    return "json" if kind == "string" and variable.get("subType") == "json" else kind


class _Builder:
    """One datafile's maps, built once."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.flag_of_experiment: dict[str, Mapping[str, Any]] = {}
        self.defaults: dict[str, dict[str, OptimizelyVariable]] = {}  # flag id → key → var
        self.by_id: dict[str, dict[str, str]] = {}  # flag id → variable id → key
        for flag in data.get("featureFlags", []):
            for experiment_id in flag.get("experimentIds", []):
                self.flag_of_experiment[experiment_id] = flag
            variables = flag.get("variables", [])
            self.defaults[flag["id"]] = {
                v["key"]: OptimizelyVariable(
                    v["id"], v["key"], _variable_type(v), v["defaultValue"]
                )
                for v in variables
            }
            self.by_id[flag["id"]] = {v["id"]: v["key"] for v in variables}
        self.audiences = self._audiences()
        self.names = {a.id: a.name or "" for a in self.audiences if a.id is not None}

    def _audiences(self) -> list[OptimizelyAudience]:
        typed = [  # their conditions JSON-encoded, as the other audiences' are
            OptimizelyAudience(a.get("id"), a.get("name"), json.dumps(a.get("conditions")))
            for a in self.data.get("typedAudiences", [])
        ]
        typed_ids = {a.id for a in typed}
        legacy = [
            OptimizelyAudience(a.get("id"), a.get("name"), a.get("conditions"))
            for a in self.data.get("audiences", [])
            if a.get("id") not in typed_ids and a.get("id") != _DUMMY_AUDIENCE
        ]
        return typed + legacy

    def _variables(
        self, experiment: Mapping[str, Any], variation: Mapping[str, Any], rule_of: str | None
    ) -> dict[str, OptimizelyVariable]:
        if rule_of is not None:  # a delivery rule: the flag's defaults
            return _copy(self.defaults.get(rule_of, {}))
        flag = self.flag_of_experiment.get(experiment["id"])
        if flag is None:
            return {}
        values = _copy(self.defaults[flag["id"]])
        if variation.get("featureEnabled"):
            keys = self.by_id[flag["id"]]
            for item in variation.get("variables", []):
                key = keys.get(item["id"])
                if key is not None:
                    values[key].value = item["value"]
        return values

    def experiment(
        self, experiment: Mapping[str, Any], rule_of: str | None = None
    ) -> OptimizelyExperiment:
        variations = {
            v["key"]: OptimizelyVariation(
                v["id"], v["key"], v.get("featureEnabled"), self._variables(experiment, v, rule_of)
            )
            for v in experiment.get("variations", [])
        }
        conditions = experiment.get("audienceConditions", [])
        audiences = "" if conditions is None else describe_conditions(conditions, self.names)
        return OptimizelyExperiment(experiment["id"], experiment["key"], variations, audiences)

    def experiments(
        self,
    ) -> tuple[dict[str, OptimizelyExperiment], dict[str, OptimizelyExperiment]]:
        by_key: dict[str, OptimizelyExperiment] = {}
        by_id: dict[str, OptimizelyExperiment] = {}
        every = list(self.data.get("experiments", []))
        for group in self.data.get("groups", []):
            every += group.get("experiments", [])
        for raw in every:
            built = self.experiment(raw)
            by_key[built.key] = by_id[built.id] = built
        return by_key, by_id

    def features(self, by_id: Mapping[str, OptimizelyExperiment]) -> dict[str, OptimizelyFeature]:
        rollouts = {r.get("id"): r for r in self.data.get("rollouts", [])}
        features: dict[str, OptimizelyFeature] = {}
        for flag in self.data.get("featureFlags", []):
            rules = [by_id[i] for i in flag.get("experimentIds", [])]
            rollout = rollouts.get(flag.get("rolloutId"))
            delivery = [
                self.experiment(e, rule_of=flag["id"])
                for e in (rollout.get("experiments") or [] if rollout else [])
            ]
            features[flag["key"]] = OptimizelyFeature(
                flag["id"],
                flag["key"],
                {e.key: e for e in rules},
                self.defaults[flag["id"]],
                delivery_rules=delivery,
                experiment_rules=rules,
            )
        return features


def _copy(variables: Mapping[str, OptimizelyVariable]) -> dict[str, OptimizelyVariable]:
    return {k: OptimizelyVariable(v.id, v.key, v.type, v.value) for k, v in variables.items()}


def optimizely_config(datafile: str | bytes) -> OptimizelyConfig:
    """The ``OptimizelyConfig`` of a datafile's JSON text (already validated)."""
    text = datafile.decode() if isinstance(datafile, bytes) else datafile
    data: Mapping[str, Any] = json.loads(text)
    builder = _Builder(data)
    by_key, by_id = builder.experiments()
    return OptimizelyConfig(
        revision=data.get("revision", ""),
        experiments_map=by_key,
        features_map=builder.features(by_id),
        _datafile=text,
        sdk_key=data.get("sdkKey") or "",
        environment_key=data.get("environmentKey") or "",
        attributes=[OptimizelyAttribute(a["id"], a["key"]) for a in data.get("attributes", [])],
        events=[
            OptimizelyEvent(e["id"], e["key"], e.get("experimentIds", []))
            for e in data.get("events", [])
        ],
        audiences=builder.audiences,
    )
