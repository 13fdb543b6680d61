"""Start-up checks of the relay's upstreams: ``--upstream-base``, one region overridden,
listening beyond loopback without a token."""

from __future__ import annotations

import logging
from typing import Any

import click

from xpevents.errors import ConfigError
from xpevents.relay.app import RelaySettings
from xpevents.send.endpoint import validate_url

__all__ = ["resolve_upstreams", "warn_if_exposed"]

logger = logging.getLogger("xpevents.relay")

_DEFAULTS = RelaySettings()
_LOOPBACK = ("127.", "::1", "localhost")


def resolve_upstreams(options: dict[str, Any], base: str | None) -> dict[str, str]:
    """``upstream`` and ``upstream_eu`` from the options and ``--upstream-base``.

    ``--upstream-base http://host:port`` maps US events to ``/v1/events`` and EU events
    to ``/eu/v1/events`` on that host (a usage error together with ``--upstream`` or
    ``--upstream-eu``). Overriding only one of those two logs a WARNING: the other
    region still goes to Optimizely's own endpoint.
    """
    us, eu = options["upstream"], options["upstream_eu"]
    custom_us, custom_eu = us != _DEFAULTS.upstream, eu != _DEFAULTS.upstream_eu
    if base is not None:
        if custom_us or custom_eu:
            raise click.UsageError(
                "--upstream-base maps both regions: give it alone, or --upstream and "
                "--upstream-eu without it"
            )
        try:
            root = validate_url(base, argument="--upstream-base").rstrip("/")
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--upstream-base") from None
        return {"upstream": root + "/v1/events", "upstream_eu": root + "/eu/v1/events"}
    if custom_us != custom_eu:
        given, other, target = (
            ("--upstream", "--upstream-eu", eu)
            if custom_us
            else ("--upstream-eu", "--upstream", us)
        )
        logger.warning(
            "only %s is set: events for the other region still go to %s (%s); set %s "
            "too, or --upstream-base http://host:port for both",
            given,
            target,
            other,
            other,
        )
    return {"upstream": us, "upstream_eu": eu}


def warn_if_exposed(host: str, token: str | None) -> None:
    """A WARNING when the relay listens beyond loopback without ``--token``."""
    if token is None and not host.startswith(_LOOPBACK):
        logger.warning(
            "relay listening on %s without --token: anyone who can reach this address can "
            "submit events to your Optimizely project; set --token (or "
            "XPEVENTS_RELAY_TOKEN), or listen on 127.0.0.1",
            host,
        )
