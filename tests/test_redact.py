"""Credentials never reach a message: xpevents._internal.redact."""

from __future__ import annotations

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
