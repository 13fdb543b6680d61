"""The decision engine: which variation a user gets. Pure: no events, no I/O.

* :mod:`~xpevents.decide.datafile`: the datafile model and its loader
  (:func:`load_config` → :class:`ProjectConfig`);
* :mod:`~xpevents.decide.audiences`: audience conditions compiled to predicates
  (:mod:`~xpevents.decide.semver` for the ``semver_*`` matches);
* :mod:`~xpevents.decide.bucketing`: murmur3 bucketing and traffic allocations;
* :mod:`~xpevents.decide.plan`: what a decision needs about one experiment or rule,
  computed once;
* :mod:`~xpevents.decide.decider`: :class:`~xpevents.decide.decider.Decider`, the
  official SDK's decision order for experiments, flags and rollouts;
* :mod:`~xpevents.decide.options`: :class:`Decision`, :class:`OptimizelyDecideOption`
  and the decide-API input errors (re-exported here: ``from xpevents.decide import
  Decision`` keeps working).
"""

from xpevents.decide.options import (
    Decision,
    InvalidInputError,
    OptimizelyDecideOption,
    OptimizelyDecision,
    UnknownKeyError,
    UserContextLike,
    parse_decide_options,
)

__all__ = [
    "Decision",
    "InvalidInputError",
    "OptimizelyDecideOption",
    "OptimizelyDecision",
    "UnknownKeyError",
    "UserContextLike",
    "parse_decide_options",
]
