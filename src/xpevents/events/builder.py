"""EventBuilder: impressions and conversions as event API v1 payloads.

The payload is the one the official optimizely-sdk 5.7.0 sends (``EventFactory`` in
``optimizely/event/event_factory.py``), key for key and in the same order, so
``builder.impression(...).params`` equals the official ``log_event.params`` apart from
``uuid``, ``timestamp``, ``client_name`` and ``client_version``::

    {"account_id", "project_id", "revision", "client_name", "client_version",
     "anonymize_ip", "enrich_decisions": true,
     "visitors": [{"snapshots": [{"events": [{"entity_id", "uuid", "key", "timestamp",
                                              "revenue"?, "value"?, "tags"?}],
                                  "decisions": [{"campaign_id", "experiment_id",
                                                 "variation_id",
                                                 "metadata": {"flag_key", "rule_key",
                                                              "rule_type", "variation_key",
                                                              "enabled"}}]}],  # impressions only
                   "attributes": [{"entity_id", "key", "type": "custom", "value"}],
                   "visitor_id"}]}

Official rules applied here:

- attributes: only string keys with a ``str``/``bool`` value or a finite number of
  magnitude at most 2**53; the key must be a datafile attribute (its id becomes
  ``entity_id``) or start with ``$opt_`` (the key is the ``entity_id``); then
  ``$opt_bot_filtering`` when the datafile sets ``botFiltering``.
- ids: ``campaign_id`` (and the impression's ``entity_id``) is the experiment's layer id,
  or the experiment id when the layer id is empty; ``variation_id`` is ``null`` unless it
  is a non-empty string of ASCII digits. For flag decisions the variation is looked up
  among the flag's variations by id (as the official ``get_flag_variation`` does).
- conversions: ``revenue`` is the ``revenue`` tag when it is an integer (not a bool);
  ``value`` is ``float(tags["value"])`` when that is finite (not a bool); ``tags`` is the
  tag dict as it would survive a JSON round trip (``None`` values of the keys
  ``revenue``, ``value``, ``tags`` and ``decisions`` dropped, at any depth).

The hot path builds fresh dicts from values precomputed at load (nothing is deep-copied
and no payload shares a mutable container with another) and takes about 3 µs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from xpevents._version import __version__
from xpevents.events.model import EVENTS_URL, EVENTS_URL_EU, LogEvent
from xpevents.events.uuids import uuid4_str
from xpevents.events.values import (
    MAX_ATTRIBUTE_NUMBER,
    get_numeric_value,
    get_revenue_value,
    normalize_campaign_id,
    normalize_variation_id,
    plain_attribute,
    tags_payload,
)
from xpevents.events.wire import (
    ENCODE_ERRORS,
    NO_TAGS,
    EncodedEvent,
    EventHead,
    VisitorWriter,
    encode,
)

if TYPE_CHECKING:
    from xpevents.decide.datafile import EventDef, Experiment, ProjectConfig, Variation

__all__ = [
    "ACTIVATE_EVENT_KEY",
    "EventBuilder",
    "get_numeric_value",
    "get_revenue_value",
    "normalize_campaign_id",
    "normalize_variation_id",
]

ACTIVATE_EVENT_KEY: Final = "campaign_activated"
BOT_FILTERING_KEY: Final = "$opt_bot_filtering"
RESERVED_PREFIX: Final = "$opt_"


class EventBuilder:
    """Turns impressions and conversions into :class:`~xpevents.LogEvent` objects.

    Args:
        config: the project config (from :func:`xpevents.decide.datafile.load_config`).
        client_name: ``client_name`` of every payload.
        client_version: ``client_version`` of every payload.
        endpoint: where events are sent; default the event API for the datafile's region
            (``https://logx.optimizely.com/v1/events``, or the EU endpoint).

    Thread-safe: it holds only data precomputed from the (immutable) config.
    """

    __slots__ = (
        "_attribute_ids",
        "_bot_filtering",
        "_campaign_ids",
        "_event_head",
        "_exp_variations",
        "_flag_variations",
        "_head",
        "_writer",
        "url",
    )

    def __init__(
        self,
        config: ProjectConfig,
        *,
        client_name: str = "xpevents",
        client_version: str = __version__,
        endpoint: str | None = None,
    ) -> None:
        region = str(config.region or "US").upper()
        self.url: str = endpoint or (EVENTS_URL_EU if region == "EU" else EVENTS_URL)
        self._head: tuple[str, str, str, str, str, bool] = (
            config.account_id,
            config.project_id,
            config.revision,
            client_name,
            client_version,
            config.anonymize_ip,
        )
        self._attribute_ids: dict[str, str] = {
            key: attribute.id for key, attribute in config.attributes.items()
        }
        bot = config.bot_filtering
        self._bot_filtering: bool | None = bot if isinstance(bot, bool) else None

        campaign_ids: dict[str, str] = {}
        exp_variations: dict[str, dict[str, tuple[str | None, str]]] = {}
        # experiments_by_id first; the key map too, in case it holds more.
        holdouts = [h.experiment for h in config.global_holdouts]
        holdouts += [h.experiment for hs in config.rule_holdouts.values() for h in hs]
        for experiment in (
            *config.experiments_by_id.values(),
            *config.experiments.values(),
            *holdouts,
        ):
            if experiment.id not in campaign_ids:
                campaign_ids[experiment.id] = normalize_campaign_id(
                    experiment.layer_id, experiment.id
                )
                exp_variations[experiment.id] = {
                    v.id: (normalize_variation_id(v.id), v.key)
                    for v in experiment.variations
                    if v.id
                }
        self._campaign_ids = campaign_ids
        self._exp_variations = exp_variations

        # The official SDK resolves a flag impression's variation among the flag's
        # variations by id (first definition wins): ProjectConfig.flag_variations.
        flag_variations: dict[str, dict[str, tuple[str | None, str]]] = {}
        for flag_key, variations in config.flag_variations.items():
            by_id: dict[str, tuple[str | None, str]] = {}
            for variation in variations:
                if variation.id and variation.id not in by_id:
                    by_id[variation.id] = (normalize_variation_id(variation.id), variation.key)
            flag_variations[flag_key] = by_id
        self._flag_variations = flag_variations
        self._event_head = EventHead(self.url, self._head)
        self._writer = VisitorWriter(self)

    def attribute_keys(self) -> list[str]:
        """The keys of the datafile's attributes (those sent with their id)."""
        return list(self._attribute_ids)

    def visitor_attributes(self, attributes: Any) -> list[dict[str, Any]]:
        """The ``attributes`` list of a visitor, by the official rules (see module doc)."""
        result: list[dict[str, Any]] = []
        if attributes and isinstance(attributes, dict):
            ids = self._attribute_ids
            for key, value in attributes.items():
                # Inline for the plain types every caller sends: this runs per attribute
                # of every impression and conversion.
                tv = type(value)
                if type(key) is str and (tv is str or tv is bool):
                    pass
                elif type(key) is str and (tv is int or tv is float):
                    if (
                        value != value
                        or value > MAX_ATTRIBUTE_NUMBER
                        or value < -MAX_ATTRIBUTE_NUMBER
                    ):
                        continue
                else:
                    item = plain_attribute(key, value)
                    if item is None:
                        continue
                    key, value = item
                entity_id = ids.get(key)
                if entity_id is None:
                    if not key.startswith(RESERVED_PREFIX):
                        continue
                    entity_id = key
                result.append(
                    {"entity_id": entity_id, "key": key, "type": "custom", "value": value}
                )
        if self._bot_filtering is not None:
            result.append(
                {
                    "entity_id": BOT_FILTERING_KEY,
                    "key": BOT_FILTERING_KEY,
                    "type": "custom",
                    "value": self._bot_filtering,
                }
            )
        return result

    def impression_visitor(
        self,
        experiment: Experiment | None,
        variation: Variation | None,
        user_id: str,
        attributes: Any,
        *,
        flag_key: str = "",
        rule_key: str = "",
        rule_type: str = "experiment",
        enabled: bool = True,
    ) -> dict[str, Any]:
        """One impression as a visitor dict (see :meth:`impression`)."""
        if experiment is not None:
            experiment_id = experiment.id
            campaign_id = self._campaign_ids.get(experiment_id)
            if campaign_id is None:
                campaign_id = normalize_campaign_id(experiment.layer_id, experiment_id)
        else:
            experiment_id = campaign_id = ""
        variation_id: str | None = None
        variation_key = ""
        if variation is not None and variation.id:
            if flag_key and rule_type != "holdout":  # a holdout's variation: by holdout id
                info = self._flag_variations.get(flag_key, {}).get(variation.id)
            else:
                info = self._exp_variations.get(experiment_id, {}).get(variation.id)
            if info is not None:
                variation_id, variation_key = info
        return {
            "snapshots": [
                {
                    "events": [
                        {
                            "entity_id": campaign_id,
                            "uuid": uuid4_str(),
                            "key": ACTIVATE_EVENT_KEY,
                            "timestamp": time.time_ns() // 1_000_000,
                        }
                    ],
                    "decisions": [
                        {
                            "campaign_id": campaign_id,
                            "experiment_id": experiment_id,
                            "variation_id": variation_id,
                            "metadata": {
                                "flag_key": flag_key,
                                "rule_key": rule_key,
                                "rule_type": rule_type,
                                "variation_key": variation_key,
                                "enabled": enabled,
                            },
                        }
                    ],
                }
            ],
            "attributes": self.visitor_attributes(attributes),
            "visitor_id": user_id,
        }

    def conversion_visitor(
        self, event: EventDef, user_id: str, attributes: Any, event_tags: Any = None
    ) -> dict[str, Any]:
        """One conversion as a visitor dict (see :meth:`conversion`)."""
        snapshot_event: dict[str, Any] = {
            "entity_id": event.id,
            "uuid": uuid4_str(),
            "key": event.key,
            "timestamp": time.time_ns() // 1_000_000,
        }
        if event_tags is not None:
            revenue = get_revenue_value(event_tags)
            if revenue is not None:
                snapshot_event["revenue"] = revenue
            value = get_numeric_value(event_tags)
            if value is not None:
                snapshot_event["value"] = value
            tags = tags_payload(event_tags)
            if tags is not None:
                snapshot_event["tags"] = tags
        return {
            "snapshots": [{"events": [snapshot_event]}],
            "attributes": self.visitor_attributes(attributes),
            "visitor_id": user_id,
        }

    def payload(self, visitors: list[dict[str, Any]]) -> dict[str, Any]:
        """The request body for ``visitors`` (all built by this builder)."""
        params = self._event_head.fields()
        params["visitors"] = visitors
        return params

    def impression(
        self,
        experiment: Experiment | None,
        variation: Variation | None,
        user_id: str,
        attributes: Any = None,
        *,
        flag_key: str = "",
        rule_key: str = "",
        rule_type: str = "experiment",
        enabled: bool = True,
    ) -> LogEvent:
        """An impression (``campaign_activated``) for ``user_id``.

        Args:
            experiment: the experiment or rule that decided (``None`` when no rule did:
                a rollout "no decision" impression, sent when ``sendFlagDecisions`` is on).
            variation: the variation the user got, or ``None``.
            user_id: the visitor id.
            attributes: the user's attributes (filtered by the official rules).
            flag_key: the flag key (``""`` for ``activate``).
            rule_key: the rule (experiment) key, ``""`` when none.
            rule_type: ``"experiment"`` (``activate``), ``"feature-test"`` or ``"rollout"``.
            enabled: whether the flag is on (``True`` for ``activate``).
        """
        try:
            wire = self._writer.impression(
                experiment, variation, user_id, attributes, flag_key, rule_key, rule_type, enabled
            )
        except ENCODE_ERRORS:  # the dict path: a dispatcher then counts what it cannot send
            visitor = self.impression_visitor(
                experiment,
                variation,
                user_id,
                attributes,
                flag_key=flag_key,
                rule_key=rule_key,
                rule_type=rule_type,
                enabled=enabled,
            )
            return LogEvent(self.url, self.payload([visitor]))
        return EncodedEvent(self._event_head, wire)

    def conversion(
        self, event: EventDef, user_id: str, attributes: Any = None, event_tags: Any = None
    ) -> LogEvent:
        """A conversion of ``event`` (a datafile event) for ``user_id`` with ``event_tags``."""
        extras = b""
        tags: Any = NO_TAGS
        try:
            if event_tags is not None:
                revenue = get_revenue_value(event_tags)
                if revenue is not None:
                    extras = b',"revenue":' + encode(revenue)
                value = get_numeric_value(event_tags)
                if value is not None:
                    extras += b',"value":' + encode(value)
                tags = tags_payload(event_tags)
                if tags is not None:
                    extras += b',"tags":' + encode(tags)
                else:
                    tags = NO_TAGS
            wire = self._writer.conversion(event, user_id, attributes, extras)
        except ENCODE_ERRORS:  # the dict path: a dispatcher then counts what it cannot send
            visitor = self.conversion_visitor(event, user_id, attributes, event_tags)
            return LogEvent(self.url, self.payload([visitor]))
        return EncodedEvent(self._event_head, wire, tags)
