"""Credentials never reach a message: xpevents._internal.redact."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from xpevents._internal.redact import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:secret@127.0.0.1:6379/9?stream=x", "redis://:***@127.0.0.1:6379/9?stream=x"),
        ("redis://user:pw@h/0", "redis://user:***@h/0"),
        ("rediss://h:1/0?password=abc&stream=s", "rediss://h:1/0?password=***&stream=s"),
        ("http://token@h/x", "http://***@h/x"),
        ("sqlite:////var/spool/x.db", "sqlite:////var/spool/x.db"),
        ("unix:///tmp/r.sock?password=p", "unix:///tmp/r.sock?password=***"),
        ("not a url", "not a url"),
    ],
)
def test_credentials_are_redacted_and_nothing_else_changes(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# -- every path that prints a URL (issue 15, item 8) --------------------------------------

SECRET = "s3cr3t-Pa55"


def _clean(*texts: object) -> None:
    for text in texts:
        assert SECRET not in str(text), text


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@127.0.0.1:1/0?stream=x",
        f"redis://user:{SECRET}@127.0.0.1:1/notanumber",
        f"redis://:{SECRET}@127.0.0.1:1/0?stream=",
        f"redix://:{SECRET}@127.0.0.1:1/0",
        f"rediss://127.0.0.1:1/0?password={SECRET}&stream=",
        f"sqlite://user:{SECRET}@host/x.db",
        f"unix:///nonexistent/redis.sock?password={SECRET}",
    ],
)
def test_spool_url_errors_never_show_a_password(url: str, caplog: pytest.LogCaptureFixture) -> None:
    from xpevents import BatchDispatcher, XpeventsError
    from xpevents.spool.opening import open_spool

    with caplog.at_level(logging.DEBUG):
        with pytest.raises(XpeventsError) as raised:
            open_spool(url)
        _clean(raised.value, repr(raised.value))
        with pytest.raises(XpeventsError) as raised:
            BatchDispatcher(spool=url)
        _clean(raised.value)
    _clean(*(r.getMessage() for r in caplog.records))


def test_redis_spool_url_repr_and_stats_hide_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from spool_redis_server import RedisServer
    from xpevents import BatchDispatcher
    from xpevents.spool.redis import RedisSpool

    with caplog.at_level(logging.DEBUG), RedisServer(password=SECRET) as server:
        spool = RedisSpool.from_url(server.url + "?stream=redact")
        _clean(spool.url, repr(spool))
        spool.close()
        query_url = f"redis://127.0.0.1:{server.port}/0?stream=redact2&password={SECRET}"
        with BatchDispatcher(spool=query_url, endpoint="http://127.0.0.1:9") as bd:
            _clean(bd.stats().spool_url, repr(bd), bd.stats().as_dict())
            bd.close(0)
        wrong = server.url.replace(SECRET, SECRET + "x")
        with pytest.raises(Exception) as raised:
            RedisSpool.from_url(wrong)
        _clean(raised.value)
    _clean(*(r.getMessage() for r in caplog.records))


def test_relay_startup_error_hides_the_password() -> None:
    """The issue's case: the relay printed the full Redis URL when it could not open it."""
    command = [sys.executable, "-m", "xpevents.relay", "--port", "0"]
    for spool in (f"redis://:{SECRET}@127.0.0.1:1/0", f"redis://:{SECRET}@127.0.0.1:1/x"):
        done = subprocess.run(
            [*command, "--spool", spool], capture_output=True, text=True, timeout=60
        )
        assert done.returncode != 0
        _clean(done.stdout, done.stderr)
        assert "127.0.0.1:1" in done.stderr


def test_endpoint_credentials_never_reach_errors_stats_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from xpevents import BatchDispatcher, DefaultEventDispatcher, DispatchError, RetryPolicy

    from payloads import event
    from servers import closed_port_url

    endpoint = closed_port_url().replace("http://", f"http://user:{SECRET}@")
    failures: list[DispatchError] = []
    with caplog.at_level(logging.DEBUG):
        with DefaultEventDispatcher(endpoint=endpoint, timeout=2) as d:
            d.dispatch_event(event())
            _clean(repr(d), d.stats().last_error)
        with BatchDispatcher(
            endpoint=endpoint,
            retry=RetryPolicy(max_attempts=1),
            flush_interval=0.05,
            on_failure=lambda v, e: failures.append(e),
        ) as bd:
            bd.dispatch_event(event())
            bd.flush(10)
            _clean(bd.stats().as_dict(), repr(bd))
        with pytest.raises(Exception) as raised:
            DefaultEventDispatcher(endpoint=f"ftp://user:{SECRET}@host/x")
        _clean(raised.value)
    assert failures
    _clean(*failures, *(e.url for e in failures))
    _clean(*(r.getMessage() for r in caplog.records))


def test_datafile_tokens_and_urls_stay_out_of_reprs_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from xpevents.config.options import PollingOptions
    from xpevents.config.polling import PollingConfigManager

    from servers import closed_port_url

    url = closed_port_url().replace("http://", f"http://user:{SECRET}@")
    options = PollingOptions(owner="x", sdk_key="k", datafile_access_token=SECRET)
    _clean(repr(options))
    with caplog.at_level(logging.DEBUG):
        manager = PollingConfigManager(url=url, blocking_timeout=1, datafile_access_token=SECRET)
        try:
            manager.get_config()
            _clean(repr(manager), manager.stats())
        finally:
            manager.close()
    _clean(*(r.getMessage() for r in caplog.records))
