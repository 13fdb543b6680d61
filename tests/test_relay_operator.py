"""The relay's operator traps (issue 10, section 4).

A spooled backlog goes to the upstream configured now, per region; dead letters can be
replayed to a new URL; --upstream-base maps both regions; half-overridden upstreams and
a relay exposed without a token are warned about.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from test_relay import FAST, payload_body, stored_uuids, wait_for_uuids
from xpevents.relay.app import DEFAULT_UPSTREAM, DEFAULT_UPSTREAM_EU
from xpevents.relay.cli import resolve_upstreams, warn_if_exposed
from xpevents.relay.testing import run_relay
from xpevents.spool.cli import spool_command
from xpevents.spool.envelope import batch_envelope, parse_envelope
from xpevents.spool.sqlite import SqliteSpool
from xpevents.testing import CollectorHandle

TYPO = "http://127.0.0.1:9/v1/events"  # a closed loopback port: the "typo"


def test_a_backlog_goes_to_the_upstream_configured_now(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    spool = f"sqlite:///{tmp_path / 'backlog.db'}"
    with run_relay(
        spool=spool, upstream=TYPO, upstream_eu=TYPO, **{**FAST, "shutdown_timeout": 0.5}
    ) as relay:
        assert relay.http.post("/v1/events", content=payload_body(["typo-us"])).status_code == 204
        assert (
            relay.http.post("/eu/v1/events", content=payload_body(["typo-eu"])).status_code == 204
        )
        time.sleep(0.5)  # forwarding fails and is scheduled for a retry
    assert not stored_uuids(collector) & {"typo-us", "typo-eu"}
    with run_relay(
        spool=spool, upstream=collector.events_url, upstream_eu=collector.eu_events_url, **FAST
    ):
        assert not wait_for_uuids(collector, {"typo-us", "typo-eu"}, timeout=20)
    regions = {row["uuid"]: row["region"] for row in collector.events()}
    assert (regions["typo-us"], regions["typo-eu"]) == ("us", "eu")


def test_upstream_base_maps_both_regions(collector: CollectorHandle, tmp_path: Path) -> None:
    with run_relay(
        spool=f"sqlite:///{tmp_path / 'base.db'}", upstream_base=collector.base_url, **FAST
    ) as relay:
        assert relay.http.post("/v1/events/", content=payload_body(["base-us"])).status_code == 204
        assert (
            relay.http.post("/eu/v1/events", content=payload_body(["base-eu"])).status_code == 204
        )
        assert not wait_for_uuids(collector, {"base-us", "base-eu"}, timeout=20)
    regions = {row["uuid"]: row["region"] for row in collector.events()}
    assert (regions["base-us"], regions["base-eu"]) == ("us", "eu")


def test_upstream_base_with_an_explicit_upstream_is_a_usage_error() -> None:
    with pytest.raises(click.UsageError, match="upstream-base"):
        resolve_upstreams(
            {"upstream": "http://a/v1/events", "upstream_eu": DEFAULT_UPSTREAM_EU}, "http://b"
        )


@pytest.mark.parametrize(
    ("us", "eu", "warned"),
    [
        ("http://127.0.0.1:1/v1/events", DEFAULT_UPSTREAM_EU, "--upstream is set"),
        (DEFAULT_UPSTREAM, "http://127.0.0.1:1/eu/v1/events", "--upstream-eu is set"),
        ("http://127.0.0.1:1/v1/events", "http://127.0.0.1:1/eu/v1/events", None),
        (DEFAULT_UPSTREAM, DEFAULT_UPSTREAM_EU, None),
    ],
)
def test_a_half_overridden_upstream_is_warned_about(
    caplog: pytest.LogCaptureFixture, us: str, eu: str, warned: str | None
) -> None:
    with caplog.at_level(logging.WARNING, "xpevents.relay"):
        assert resolve_upstreams({"upstream": us, "upstream_eu": eu}, None) == {
            "upstream": us,
            "upstream_eu": eu,
        }
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned is None:
        assert not warnings
    else:
        assert len(warnings) == 1 and f"only {warned.split()[0]}" in warnings[0]


@pytest.mark.parametrize(
    ("host", "token", "warns"),
    [
        ("0.0.0.0", None, True),
        ("10.1.2.3", None, True),
        ("::", None, True),
        ("0.0.0.0", "t", False),
        ("127.0.0.1", None, False),
        ("::1", None, False),
        ("localhost", None, False),
    ],
)
def test_listening_beyond_loopback_without_a_token_is_warned_about(
    caplog: pytest.LogCaptureFixture, host: str, token: str | None, warns: bool
) -> None:
    with caplog.at_level(logging.WARNING, "xpevents.relay"):
        warn_if_exposed(host, token)
    assert any("without --token" in r.getMessage() for r in caplog.records) is warns


def test_spool_replay_to_a_new_url(tmp_path: Path) -> None:
    path = tmp_path / "dead.db"
    spool = SqliteSpool(path)
    now = time.time()
    us = batch_envelope(TYPO, {"account_id": "1"})
    eu = batch_envelope("https://eu.logx.optimizely.com/v1/events", {"account_id": "1"})
    spool.append([(us, b'{"v":1}'), (eu, b'{"v":2}'), (us, b'{"v":3}')], now=now)
    records = []
    while len(records) < 3:  # a claim may hold one envelope's records only
        records += spool.claim(max_records=3, max_bytes=1 << 20, lease=30, now=now)
    by_visitor = {r.visitor: r.id for r in records}
    spool.dead_letter([by_visitor[b'{"v":1}'], by_visitor[b'{"v":2}']], reason="network", now=now)
    spool.dead_letter([by_visitor[b'{"v":3}']], reason="http_400", now=now)
    runner = CliRunner()
    result = runner.invoke(
        spool_command,
        ["replay", f"sqlite:///{path}", "--to", "http://127.0.0.1:8788", "--reason", "network"],
    )
    assert result.exit_code != 0 and "--dead-letter only" in result.output
    result = runner.invoke(
        spool_command,
        [
            "replay",
            f"sqlite:///{path}",
            "--dead-letter",
            "--reason",
            "network",
            "--to",
            "http://127.0.0.1:8788",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 dead letter(s) replayed to http://127.0.0.1:8788" in result.output
    queued = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=now + 1)
    queued += spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=now + 1)
    urls = {r.visitor: parse_envelope(r.envelope).url for r in queued}
    assert urls == {
        b'{"v":1}': "http://127.0.0.1:8788/v1/events",
        b'{"v":2}': "http://127.0.0.1:8788/eu/v1/events",
    }
    assert [d.reason for d in spool.dead_letters()] == ["http_400"]  # the other reason stays
    spool.close()
