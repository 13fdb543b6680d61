"""``XpeventsProvider``: the OpenFeature ``AbstractProvider`` over an xpevents ``Client``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType
from openfeature.hook import Hook
from openfeature.provider import AbstractProvider, Metadata
from openfeature.track import TrackingEventDetails

from xpevents.client import Client
from xpevents.client.notifications import NotificationType
from xpevents.decide.datafile import ProjectConfig
from xpevents.errors import ConfigError
from xpevents.openfeature.resolve import (
    attributes_of,
    error,
    flag_metadata,
    flag_signatures,
    reason_of,
    split_key,
    typed_value,
)

__all__ = ["XpeventsProvider"]

logger = logging.getLogger("xpevents.openfeature")


class XpeventsProvider(AbstractProvider):
    """OpenFeature flags decided by xpevents, with the impressions Client sends.

    Args:
        client: an :class:`xpevents.Client` of yours (not closed by :meth:`shutdown`).
            Without one, ``**client_options`` build one (``sdk_key=``, ``datafile=``,
            ``event_dispatcher=``...), owned and closed by the provider.
        stale_check_interval: seconds between looks at the datafile manager's state, to
            emit ``PROVIDER_STALE`` when refreshing fails and ``PROVIDER_READY`` when it
            recovers. Default 5. ``None``: no watcher thread.

    Raises:
        ConfigError: both ``client`` and client options, or bad options.
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        stale_check_interval: float | None = 5.0,
        **client_options: Any,
    ) -> None:
        super().__init__()
        if client is not None and client_options:
            raise ConfigError(
                "XpeventsProvider: pass a client or client options "
                f"({', '.join(sorted(client_options))}), not both"
            )
        if client is not None and not isinstance(client, Client):
            raise ConfigError(f"XpeventsProvider(client={client!r}): expected an xpevents.Client")
        if stale_check_interval is not None and not (
            isinstance(stale_check_interval, int | float) and stale_check_interval > 0
        ):
            raise ConfigError(
                f"XpeventsProvider(stale_check_interval={stale_check_interval!r}): "
                "expected seconds > 0 or None"
            )
        self._owned = client is None
        self.client = client if client is not None else Client(**client_options)
        self._interval = stale_check_interval
        self._stale = False
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._flags: Mapping[str, Any] = self._signature()
        self._had_config = self.client.config is not None
        self.client.notification_center.add_notification_listener(
            NotificationType.OPTIMIZELY_CONFIG_UPDATE, self._config_changed
        )

    # -- lifecycle -----------------------------------------------------------------------

    def get_metadata(self) -> Metadata:
        """The provider's name, ``xpevents``."""
        return Metadata(name="xpevents")

    def get_provider_hooks(self) -> list[Hook]:
        """No hooks of its own."""
        return []

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Ready once the client has a datafile (waits once, up to its blocking timeout).

        Raises:
            ProviderNotReadyError: no usable datafile yet; ``PROVIDER_READY`` is emitted
                when one arrives.
        """
        if self._interval is not None and self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch, name="xpevents-openfeature", daemon=True
            )
            self._watcher.start()
        self.client.get_optimizely_config()  # waits once for a first datafile
        if not self.client.is_valid:
            raise ProviderNotReadyError("no datafile yet: decisions wait for the first one")

    def shutdown(self) -> None:
        """Stop the watcher; close the client if the provider created it (flushes events)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(5)
        if self._owned:
            self.client.close()

    def _signature(self) -> Mapping[str, Any]:
        """Per flag key, the datafile's text of the flag, its experiments and its rollout."""
        optimizely_config = self.client.get_optimizely_config()
        datafile = optimizely_config.get_datafile() if optimizely_config is not None else None
        return flag_signatures(datafile) if datafile else {}

    def _config_changed(self, *args: Any) -> None:
        before, after = self._flags, self._signature()
        self._flags = after
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        config = self.client.config
        revision = config.revision if config is not None else ""
        if not self._had_config:
            self._had_config = True
            self.emit_provider_ready(ProviderEventDetails(message=f"datafile {revision}"))
            return
        self.emit_provider_configuration_changed(
            ProviderEventDetails(
                flags_changed=changed,
                message=f"datafile revision {revision}",
                metadata={"revision": revision},
            )
        )

    def _watch(self) -> None:
        assert self._interval is not None
        while not self._stop.wait(self._interval):
            try:
                self._check_stale()
            except Exception:  # a watcher must never die of a bug
                logger.exception("checking the datafile's freshness failed")

    def _check_stale(self) -> None:
        stats = self.client.config_stats()
        failing = stats.last_fetch_at is not None and (
            stats.last_success_at is None or stats.last_success_at < stats.last_fetch_at
        )
        if failing and stats.ready and not self._stale:
            self._stale = True
            self.emit_provider_stale(
                ProviderEventDetails(message=f"datafile refresh failing: {stats.last_error}")
            )
        elif not failing and self._stale:
            self._stale = False
            self.emit_provider_ready(ProviderEventDetails(message="datafile refresh recovered"))

    # -- resolution ----------------------------------------------------------------------

    def _resolve(
        self, key: str, wanted: str, default: Any, context: EvaluationContext | None
    ) -> FlagResolutionDetails[Any]:
        user_id = context.targeting_key if context is not None else None
        if not user_id:
            return error(
                default,
                ErrorCode.TARGETING_KEY_MISSING,
                "the evaluation context needs a targeting_key (the Optimizely user id)",
            )
        config = self.client.config
        if config is None:
            return error(default, ErrorCode.PROVIDER_NOT_READY, "no datafile yet")
        flag, variable = split_key(key)
        if flag not in config.flags:
            return error(default, ErrorCode.FLAG_NOT_FOUND, f"no flag {flag!r} in the datafile")
        attributes = attributes_of(context.attributes if context is not None else {})
        decision = self.client.decide(user_id, flag, attributes)
        return self._details(config, decision, flag, variable, wanted, default)

    @staticmethod
    def _details(
        config: ProjectConfig,
        decision: Any,
        flag: str,
        variable: str | None,
        wanted: str,
        default: Any,
    ) -> FlagResolutionDetails[Any]:
        value = typed_value(config, decision, flag, variable, wanted, default)
        if isinstance(value, FlagResolutionDetails):
            return value
        return FlagResolutionDetails(
            value=value,
            reason=reason_of(config, decision),
            variant=decision.variation_key,
            flag_metadata=flag_metadata(config, decision),
        )

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        """``flag``: enabled or not; ``flag.variable``: a boolean variable."""
        return self._resolve(flag_key, "boolean", default_value, evaluation_context)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        """``flag.variable``: a string variable."""
        return self._resolve(flag_key, "string", default_value, evaluation_context)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        """``flag.variable``: an integer variable."""
        return self._resolve(flag_key, "integer", default_value, evaluation_context)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        """``flag.variable``: a double (or integer) variable, as a float."""
        return self._resolve(flag_key, "float", default_value, evaluation_context)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        """``flag``: every variable as an object; ``flag.variable``: a json variable."""
        return self._resolve(flag_key, "object", default_value, evaluation_context)

    # -- tracking ------------------------------------------------------------------------

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: TrackingEventDetails | None = None,
    ) -> None:
        """``client.track(name, targeting_key, attributes, tags)``.

        The details' ``value`` becomes the ``value`` tag, its attributes the other tags
        (``revenue`` an integer in cents, as Optimizely wants). Without a targeting key
        nothing is sent (logged).
        """
        user_id = evaluation_context.targeting_key if evaluation_context is not None else None
        if not user_id:
            logger.error("track(%r): the evaluation context has no targeting_key; not sent",
                         tracking_event_name)  # fmt: skip
            return
        attributes = attributes_of(evaluation_context.attributes if evaluation_context else {})
        tags: dict[str, Any] = {}
        if tracking_event_details is not None:
            tags.update(tracking_event_details.attributes)
            if tracking_event_details.value is not None:
                tags["value"] = tracking_event_details.value
        self.client.track(tracking_event_name, user_id, attributes, tags or None)
