"""The datafile: typed, immutable model and lookup indexes.

Three steps, one module each: :mod:`~xpevents.decide.datafile.wire` (msgspec structs
that mirror the JSON), :mod:`~xpevents.decide.datafile.build` (references checked,
warnings, indexes) and :mod:`~xpevents.decide.datafile.model` (the frozen result).

:func:`load_config` accepts a datafile as ``str``, ``bytes`` or an already-parsed
``dict`` (versions 2, 3 and 4), decodes it with msgspec into frozen wire structs, and
builds a :class:`ProjectConfig` with every index the decision engine needs, once.

Errors
    Anything that cannot be decoded raises :class:`~xpevents.errors.DatafileError`
    whose message starts with the JSON path of the problem, e.g.
    ``$.experiments[3].trafficAllocation[0].endOfRange: expected int, got str``.

Warnings
    Problems the official SDK (optimizely-sdk 5.7.0) tolerates or handles in a
    specific way are logged on the ``xpevents.datafile`` logger and listed in
    :attr:`ProjectConfig.warnings`; they are then handled exactly as the official SDK
    handles them:

    * a traffic allocation entity id that is not a variation of its experiment:
      users bucketed there get no variation;
    * an audience id that does not exist: that audience evaluates to "unknown";
    * a group traffic allocation naming an experiment that is not in the group:
      users bucketed there are in no experiment of the group;
    * a whitelist (``forcedVariations``) naming an unknown variation key: ignored;
    * an unsupported ``version``, a flag naming an experiment id or a rollout id
      that does not exist: the official SDK refuses such a datafile and then answers
      "no decision" for everything. We load it, set :attr:`ProjectConfig.usable` to
      ``False``, and :class:`~xpevents.decide.decider.Decider` answers "no variation" for
      every experiment and flag (a client should report flag decisions with no
      variables, as the official SDK does when it has no config).

Which datafiles are usable follows optimizely-sdk 5.7.0 (its JSON schema, then what its
``ProjectConfig`` refuses) and a few safety limits: see
:mod:`~xpevents.decide.datafile.acceptance`. Fields we do not use (``cmab``, ...) are
accepted and ignored.

Where the model differs from the official SDK's ``ProjectConfig``:

* :attr:`ProjectConfig.experiments` is keyed like the official SDK's
  ``experiment_key_map``: it holds top-level experiments, group experiments *and*
  rollout rules (the official ``get_variation``/``activate`` accept a rule key).
* Extra attributes: :attr:`ProjectConfig.usable`,
  :attr:`ProjectConfig.flag_variations`, :attr:`ProjectConfig.variable_values`,
  :attr:`ProjectConfig.experiment_flag_ids`, :attr:`Experiment.group_policy`,
  :attr:`Experiment.type`, :attr:`Experiment.audience_check`,
  :attr:`Audience.predicate`, :attr:`Group.experiment_ids`.
"""

from xpevents.decide.datafile.build import SUPPORTED_VERSIONS, load_config
from xpevents.decide.datafile.model import (
    AttributeDef,
    Audience,
    EventDef,
    Experiment,
    Flag,
    Group,
    ProjectConfig,
    Rollout,
    TrafficAllocation,
    VariableDef,
    Variation,
)

__all__ = [
    "SUPPORTED_VERSIONS",
    "AttributeDef",
    "Audience",
    "EventDef",
    "Experiment",
    "Flag",
    "Group",
    "ProjectConfig",
    "Rollout",
    "TrafficAllocation",
    "VariableDef",
    "Variation",
    "load_config",
]
