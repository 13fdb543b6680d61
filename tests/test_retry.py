from __future__ import annotations

import email.utils
import logging
import random

import pytest

from xpevents import BatchDispatcher
from xpevents.errors import ConfigError
from xpevents.send.endpoint import EndpointRouter, is_eu_url
from xpevents.send.outcome import Outcome, classify_status, parse_retry_after
from xpevents.send.retry import BACKGROUND_RETRY, SYNC_RETRY, RetryPolicy


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (299, Outcome.DELIVERED),
        (408, Outcome.TRANSIENT),
        (429, Outcome.TRANSIENT),
        (500, Outcome.TRANSIENT),
        (503, Outcome.TRANSIENT),
        (599, Outcome.TRANSIENT),
        (301, Outcome.PERMANENT),
        (400, Outcome.PERMANENT),
        (401, Outcome.PERMANENT),
        (413, Outcome.PERMANENT),
    ],
)
def test_classify_status(status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome


def test_parse_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-1") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30, abs=1)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


def test_backoff_is_full_jitter_and_capped() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_base=0.5, backoff_max=4.0)
    rng = random.Random(1)
    for retry_number, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0), (500, 4.0)]:
        samples = [policy.backoff(retry_number, rng) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # really spread over the whole range


def test_next_delay_reasons() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_base=0.1, backoff_max=1.0, max_retry_after=10)
    assert isinstance(policy.next_delay(attempts=1, first_attempt_at=0, now=0), float)
    assert policy.next_delay(attempts=3, first_attempt_at=0, now=0) == "attempts_exhausted"
    delay = policy.next_delay(attempts=1, first_attempt_at=0, now=0, retry_after=5)
    assert delay == 5  # never earlier than the server asked
    too_long = policy.next_delay(attempts=1, first_attempt_at=0, now=0, retry_after=11)
    assert too_long == "retry_after_too_long"
    aged = RetryPolicy(max_attempts=None, max_retry_age=60)
    assert aged.next_delay(attempts=50, first_attempt_at=0, now=61) == "retry_age_exceeded"


def test_defaults_match_the_documentation() -> None:
    assert (SYNC_RETRY.max_attempts, SYNC_RETRY.backoff_base, SYNC_RETRY.backoff_max) == (
        3,
        0.2,
        1.0,
    )
    assert BACKGROUND_RETRY.max_attempts is None
    assert (BACKGROUND_RETRY.backoff_base, BACKGROUND_RETRY.backoff_max) == (0.5, 30.0)
    assert BACKGROUND_RETRY.max_retry_after == 300.0
    assert BACKGROUND_RETRY.max_retry_age == 3600.0


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"backoff_base": -1}, "backoff_base"),
        ({"backoff_max": float("inf")}, "backoff_max"),
        ({"max_retry_after": "5"}, "max_retry_after"),
        ({"max_attempts": None, "max_retry_age": None}, "never end"),
    ],
)
def test_retry_policy_validation(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_endpoint_router() -> None:
    us = "https://logx.optimizely.com/v1/events"
    eu = "https://eu.logx.optimizely.com/v1/events"
    assert EndpointRouter(None).route(us) == us
    base = EndpointRouter("http://127.0.0.1:8787")
    assert base.route(us) == "http://127.0.0.1:8787/v1/events"
    assert base.route(eu) == "http://127.0.0.1:8787/eu/v1/events"
    assert (
        EndpointRouter("http://127.0.0.1:8787/").route(eu) == "http://127.0.0.1:8787/eu/v1/events"
    )
    full = EndpointRouter("http://127.0.0.1:9/ingest")
    assert full.route(us) == full.route(eu) == "http://127.0.0.1:9/ingest"
    assert is_eu_url("http://127.0.0.1:1/eu/v1/events")
    assert not is_eu_url(us)


def test_an_endpoint_path_that_no_event_server_accepts_is_warned_at_construction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Newcomer review F19: a typo in the path was found only at the first send (404)."""
    with caplog.at_level(logging.WARNING, logger="xpevents.dispatch"):
        for good in (
            "http://127.0.0.1:8788",
            "http://127.0.0.1:8788/",
            "http://127.0.0.1:8788/v1/events",
            "http://127.0.0.1:8788/v1/events/",
            "http://127.0.0.1:8788/eu/v1/events",
            "https://proxy.example/xp/v1/events",
        ):
            EndpointRouter(good)
        assert caplog.records == []
        with BatchDispatcher(endpoint="http://127.0.0.1:8788/v1/evnets"):
            pass
    (record,) = caplog.records
    message = record.getMessage()
    assert "'/v1/evnets' is not an event API path" in message
    assert "did you mean '/v1/events'?" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xpevents.dispatch"):
        EndpointRouter("http://127.0.0.1:9/ingest")
    assert "did you mean" not in caplog.records[0].getMessage()


@pytest.mark.parametrize("bad", ["ftp://x/y", "logx.optimizely.com", "http://", 42, ""])
def test_endpoint_router_rejects_non_http(bad: object) -> None:
    with pytest.raises(ConfigError, match="endpoint"):
        EndpointRouter(bad)  # type: ignore[arg-type]
