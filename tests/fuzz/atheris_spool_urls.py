"""Coverage-guided fuzzing of the spool URL parsers with atheris (``make fuzz``).

Run: ``python tests/fuzz/atheris_spool_urls.py -runs=200000`` (libFuzzer options).
Every input is decoded as UTF-8 (invalid bytes replaced) and given to each parser; only
:class:`ConfigError` may come out, and its message never shows the input's password.
Nothing connects: the Redis parser's client factory is never called.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from xpevents import ConfigError
    from xpevents._internal.redact import redact_text, redact_url, secrets_of
    from xpevents.spool.opening import open_spool
    from xpevents.spool.redis.url import from_url as redis_from_url
    from xpevents.spool.sqlite.url import options_from_url


def _one(url: str) -> None:
    try:
        if url.lower().startswith("sqlite"):
            options_from_url(url)
        elif url.startswith(("redis://", "rediss://", "unix://")):
            redis_from_url(url)
        else:
            open_spool(url)
    except ConfigError as error:
        message = str(error)
        assert message and "spool" in message.lower(), message
        for secret in secrets_of(url):
            if len(secret) >= 8 and url.count(secret) == 1:  # not also a host or path
                assert secret not in message, (url, message)
    redact_url(url)
    redact_text(url, url)


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    for prefix in ("", "redis://", "sqlite:///"):
        _one(prefix + text)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
