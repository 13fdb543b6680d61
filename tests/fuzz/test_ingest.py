"""Hypothesis over request bodies for the relay and the collector, in process.

Malformed JSON, mutations of real SDK payloads (tests/fixtures/sdk/), deep nesting,
other encodings (UTF-16, Latin-1, invalid UTF-8, lone surrogate escapes), gzip
(valid, truncated, garbage, bombs): neither service ever answers 5xx, and every
refusal is a 4xx JSON answer with an ``error`` and a ``reason``. A fixed seed and a
bounded number of examples (``XPEVENTS_FUZZ_EXAMPLES``, default 80 per strategy)
keep it to a few seconds in ``make test``; raise it for a longer campaign.
"""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from xpevents.collector import Collector
from xpevents.relay.app import Relay, RelaySettings
from xpevents.spool.memory import MemorySpool

# The relay's sender threads draw backoff jitter from `random` while hypothesis runs.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

EXAMPLES = int(os.environ.get("XPEVENTS_FUZZ_EXAMPLES", "80"))
FIXTURES = sorted((Path(__file__).parent.parent / "fixtures" / "sdk").glob("*.json"))
_FILE = msgspec.json.Decoder(dict[str, msgspec.Raw])
PAYLOADS = [bytes(_FILE.decode(p.read_bytes())["payload"]) for p in FIXTURES]
MAX_BODY = 200_000

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Client:
    """Calls an ASGI app directly on one event loop: no server, no thread per request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        return self.loop.run_until_complete(self._post(body, headers))

    async def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/events",
            "raw_path": b"/v1/events",
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
        }
        chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)] or [b""]
        messages = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]
        status: list[int] = []
        answer: list[bytes] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await asyncio.sleep(3600)  # pragma: no cover - never asked for
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            else:
                answer.append(message.get("body", b""))

        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # an exception out of the app is a 500
            return 500, repr(exc).encode()
        return status[0], b"".join(answer)

    def close(self) -> None:
        self.loop.close()


@pytest.fixture(scope="module", params=["relay", "collector"])
def client(request: pytest.FixtureRequest) -> Iterator[Client]:
    if request.param == "relay":
        # The upstream is a closed port on loopback: forwarding fails and retries,
        # which is none of ingest's business; nothing leaves the machine.
        settings_ = RelaySettings(
            upstream="http://127.0.0.1:9/v1/events",
            upstream_eu="http://127.0.0.1:9/eu/v1/events",
            max_body=MAX_BODY,
            flush_interval=60,
        )
        relay = Relay(MemorySpool(1_000_000, "drop_newest"), settings_)
        http = Client(relay.app)
        yield http
        http.close()
        relay.close(timeout=0)
    else:
        collector = Collector(max_body=MAX_BODY, strict="warn")
        http = Client(collector.app)
        yield http
        http.close()
        collector.close()


def check(client: Client, body: bytes, headers: dict[str, str] | None = None) -> None:
    status, text = client.post(body, headers or {})
    assert status < 500, (status, text[:300], body[:200])
    if status >= 400:
        answer = msgspec.json.decode(text)
        assert answer["error"] and answer["reason"], answer
        if status == 400 and "path" in answer:
            assert answer["path"].startswith("$")
    else:
        assert status == 204


# -- strategies -------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@st.composite
def mutated_payloads(draw: st.DrawFn) -> bytes:
    """A real SDK payload with bytes flipped, inserted, deleted or cut off."""
    body = bytearray(draw(st.sampled_from(PAYLOADS)))
    for _ in range(draw(st.integers(1, 6))):
        if not body:
            break
        at = draw(st.integers(0, len(body) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete", "cut", "splice"]))
        if action == "flip":
            body[at] = draw(st.integers(0, 255))
        elif action == "insert":
            body[at:at] = draw(
                st.sampled_from(
                    [
                        b"\xff",
                        b"\xc3",
                        b"\\ud800",
                        b"\\udc00",
                        b"null",
                        b"[",
                        b"{",
                        b'"',
                        b",",
                        b"\x00",
                    ]
                )
            )
        elif action == "delete":
            del body[at : at + draw(st.integers(1, 8))]
        elif action == "cut":
            del body[at:]
        else:
            body[at:at] = msgspec.json.encode(draw(json_values))
    return bytes(body)


@st.composite
def shaped_payloads(draw: st.DrawFn) -> bytes:
    """Event-API-like documents whose every value may be of any JSON type."""
    visitor = st.dictionaries(
        st.sampled_from(["visitor_id", "snapshots", "attributes", "session_id", "x"]),
        json_values,
        max_size=4,
    )
    top: dict[str, Any] = draw(
        st.dictionaries(
            st.sampled_from(["account_id", "project_id", "revision", "client_name", "y"]),
            json_values,
            max_size=4,
        )
    )
    top["visitors"] = draw(st.lists(visitor, max_size=4) | json_values)
    return msgspec.json.encode(top)


@st.composite
def deep(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(900, 5000))
    opener, closer = draw(st.sampled_from([(b'{"a":', b"}"), (b"[", b"]"), (b'[{"a":', b"}]")]))
    inner = opener * depth + b"1" + closer * depth
    where = draw(st.sampled_from(["top", "visitor", "tags"]))
    if where == "top":
        return inner
    if where == "visitor":
        return b'{"visitors": [' + inner + b"]}"
    return (
        b'{"account_id": "1", "visitors": [{"snapshots": [{"events": [{"tags": '
        + inner
        + b"}]}]}]}"
    )


@st.composite
def encoded(draw: st.DrawFn) -> bytes:
    text = draw(st.sampled_from(PAYLOADS)).decode()
    text = text.replace('"', draw(st.sampled_from(['"', '"é', '"\U0001f600'])), 3)
    encoding = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "utf-8-sig"]))
    return text.encode(encoding, errors="replace")


# -- properties -------------------------------------------------------------------------


@seed(20261202)
@FUZZ
@given(body=st.binary(max_size=400))
def test_random_bytes(client: Client, body: bytes) -> None:
    check(client, body)


@seed(20261203)
@FUZZ
@given(body=mutated_payloads())
def test_mutated_sdk_payloads(client: Client, body: bytes) -> None:
    check(client, body)


@seed(20261204)
@FUZZ
@given(body=shaped_payloads())
def test_any_json_in_every_field(client: Client, body: bytes) -> None:
    check(client, body)


@seed(20261205)
@settings(FUZZ, max_examples=max(10, EXAMPLES // 10))
@given(body=deep())
def test_deep_nesting(client: Client, body: bytes) -> None:
    check(client, body)


@seed(20261206)
@FUZZ
@given(body=encoded())
def test_other_encodings(client: Client, body: bytes) -> None:
    check(client, body)


@seed(20261207)
@FUZZ
@given(
    body=mutated_payloads() | st.sampled_from(PAYLOADS),
    how=st.sampled_from(["gzip", "truncated", "garbage", "double", "bomb"]),
    encoding=st.sampled_from(["gzip", "x-gzip", " GZIP ", "deflate", "gzip, gzip"]),
)
def test_gzip(client: Client, body: bytes, how: str, encoding: str) -> None:
    packed = gzip.compress(body, 1)
    if how == "truncated":
        packed = packed[: len(packed) // 2]
    elif how == "garbage":
        packed = packed[:10] + body[:50]
    elif how == "double":
        packed = gzip.compress(packed, 1)
    elif how == "bomb":
        packed = gzip.compress(b"[" * (MAX_BODY * 3), 9)
    check(client, packed, {"Content-Encoding": encoding})
