"""Mutations of valid datafiles, and the official SDK's verdict on a datafile.

A mutation walks to one place of a datafile (an object key or an array item, chosen by
index) and changes it: removes it, replaces it with a value of another JSON type, a
string the engine never saw (a lone surrogate, an unknown variable type), or a deeply
nested value. :func:`official_accepts` is optimizely-sdk 5.7.0's answer, with its
default schema validation on.
"""

from __future__ import annotations

import copy
import json
import logging
import random
from typing import Any

__all__ = ["MUTATIONS", "deep", "mutate", "official_accepts", "places"]


def places(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``doc`` (object keys and array indexes)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.append((*path, key))
            out.extend(places(value, (*path, key)))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out.append((*path, index))
            out.extend(places(value, (*path, index)))
    return out


def deep(depth: int) -> Any:
    """A list nested ``depth`` levels deep, with a condition at the bottom."""
    value: Any = {"name": "a", "type": "custom_attribute", "value": 1}
    for _ in range(depth):
        value = ["or", value]
    return value


MUTATIONS: dict[str, Any] = {
    "delete": None,
    "null": None,
    "int": 7,
    "float": 1.5,
    "bool": True,
    "string": "x",
    "empty_string": "",
    "unknown_type": "decimal",
    "object": {"k": "v"},
    "empty_object": {},
    "list": ["a"],
    "empty_list": [],
    "surrogate": "\ud800",
    "surrogate_key": "\udfff",
    "deep": "deep",
    "big_int": 2**70,
    "negative": -1,
}


def mutate(doc: dict[str, Any], path: tuple[Any, ...], kind: str) -> dict[str, Any]:
    """A copy of ``doc`` with the value at ``path`` changed by the mutation ``kind``."""
    out = copy.deepcopy(doc)
    parent: Any = out
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if kind == "delete":
        del parent[last]
    elif kind == "surrogate_key" and isinstance(parent, dict):
        parent["\udfff" + str(last)] = parent.pop(last)
    elif kind == "deep":
        parent[last] = deep(300)
    else:
        parent[last] = copy.deepcopy(MUTATIONS[kind])
    return out


class _NoDispatch:
    def dispatch_event(self, event: Any) -> None:
        pass


def official_accepts(doc: Any) -> bool | None:
    """Whether optimizely-sdk 5.7.0 loads the datafile (``None``: it raised, or no JSON)."""
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor
    from optimizely.helpers.sdk_settings import OptimizelySdkSettings

    try:
        text = json.dumps(doc)
    except (ValueError, TypeError, RecursionError):
        return None
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        opt = optimizely.Optimizely(
            text,
            event_dispatcher=_NoDispatch(),
            event_processor=ForwardingEventProcessor(_NoDispatch()),
            settings=OptimizelySdkSettings(odp_disabled=True),
        )
        return opt.config_manager.get_config() is not None
    except Exception:
        return None
    finally:
        logging.disable(previous)


def random_mutation(doc: dict[str, Any], rng: random.Random) -> tuple[tuple[Any, ...], str]:
    """A path and a mutation kind drawn with ``rng``."""
    all_places = places(doc)
    return rng.choice(all_places), rng.choice(list(MUTATIONS))
