"""Hypothesis over the spool URL parsers (issue 15): whatever the text, the answer is a
parsed URL or a :class:`ConfigError` with a message naming the spool URL, never another
exception, and never a password.

Nothing here connects anywhere: the Redis parser returns a client factory that is not
called, SQLite URLs are only parsed, and ``open_spool`` is only given text that is not
a Redis or SQLite URL. A fixed seed and a bounded example count in ``make test``;
``make fuzz`` raises the count (``XPEVENTS_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import os
from urllib.parse import quote

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from xpevents import ConfigError
from xpevents._internal.redact import redact_text, redact_url
from xpevents.spool.opening import open_spool
from xpevents.spool.redis.url import from_url as redis_from_url
from xpevents.spool.sqlite.url import options_from_url

EXAMPLES = int(os.environ.get("XPEVENTS_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 1000,
    suppress_health_check=[HealthCheck.too_slow],
)

_SCHEMES = ["redis", "rediss", "unix", "sqlite", "http", "memory", "", "REDIS", "sqlite3"]
_KEYS = ["stream", "group", "consumer", "dead", "password", "sync", "busy_timeout", "db", "x"]
_PASSWORD = st.text("0123456789abcdef", min_size=8, max_size=16).map(lambda s: "PWq" + s)


@st.composite
def spool_urls(draw: st.DrawFn) -> tuple[str, str]:
    """A URL-shaped string (often almost valid) and the password it carries."""
    password = draw(_PASSWORD)
    scheme = draw(st.sampled_from(_SCHEMES))
    user = draw(st.sampled_from(["", ":", "user:", "u"]))
    userinfo = f"{user}{password}@" if user else draw(st.sampled_from(["", f"{password}@"]))
    host = draw(st.sampled_from(["127.0.0.1", "localhost", "", "[::1]", "h:x", "%zz", "a b"]))
    port = draw(st.sampled_from(["", ":6379", ":0", ":99999", ":-1", ":abc"]))
    path = draw(st.text(max_size=20).map(lambda t: "/" + quote(t, safe="/.:")))
    pairs = draw(st.lists(st.tuples(st.sampled_from(_KEYS), st.text(max_size=8)), max_size=4))
    query = "&".join(f"{k}={quote(v)}" for k, v in pairs)
    if draw(st.booleans()):
        query += f"&password={password}"
    slashes = draw(st.sampled_from(["://", ":///", ":////", ":", ""]))
    return f"{scheme}{slashes}{userinfo}{host}{port}{path}?{query}", password


def _parse(url: str) -> None:
    """Every parser the URL can reach, none of which connects or creates a file."""
    if url.lower().startswith("sqlite"):
        options_from_url(url)
    elif url.startswith(("redis://", "rediss://", "unix://")):
        redis_from_url(url)  # the client factory is not called: no connection
    else:
        open_spool(url)


def _check(url: str, password: str | None) -> None:
    try:
        _parse(url)
    except ConfigError as error:
        message = str(error)
        assert message, "an error without a message"
        assert "spool" in message.lower(), message
        if password is not None:
            assert password not in message, message
    # Anything else propagates and fails the test: only ConfigError is allowed.


@seed(15)
@FUZZ
@given(spool_urls())
def test_structured_spool_urls_parse_or_fail_cleanly(case: tuple[str, str]) -> None:
    url, password = case
    _check(url, password)


@seed(16)
@FUZZ
@given(st.text(max_size=80))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    for url in (text, "redis://" + text, "sqlite://" + text, "sqlite:///" + text):
        _check(url, None)


@seed(17)
@FUZZ
@given(spool_urls(), st.text(max_size=40))
def test_redaction_never_raises_and_hides_the_password(case: tuple[str, str], noise: str) -> None:
    url, password = case
    shown = redact_url(url)
    assert isinstance(shown, str)
    text = redact_text(f"{noise} {url} {noise}", url)
    if "@" in url.partition("?")[0] or f"password={password}" in url:
        assert password not in text.replace(noise, ""), (url, text)
