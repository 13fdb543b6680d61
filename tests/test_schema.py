"""The event API payload model: lenient on shape, strict on types, errors with paths."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest

from xpevents.errors import PayloadError
from xpevents.serving.schema import (
    Decision,
    Payload,
    PayloadSchemaError,
    SnapshotEvent,
    decode_payload,
    encode_payload,
)

IMPRESSION: dict[str, Any] = {
    "account_id": "10367498574",
    "project_id": "20224828075",
    "revision": "241",
    "client_name": "python-sdk",
    "client_version": "5.7.0",
    "anonymize_ip": True,
    "enrich_decisions": True,
    "visitors": [
        {
            "visitor_id": "user-1",
            "attributes": [
                {"entity_id": "20203000001", "key": "country", "type": "custom", "value": "US"},
                {"entity_id": "20203000002", "key": "age", "type": "custom", "value": 30},
            ],
            "snapshots": [
                {
                    "decisions": [
                        {
                            "campaign_id": "21000015638",
                            "experiment_id": "21000014521",
                            "variation_id": "21000017872",
                            "metadata": {
                                "flag_key": "",
                                "rule_key": "checkout_button_color",
                                "rule_type": "experiment",
                                "variation_key": "variant_a",
                                "enabled": True,
                            },
                        }
                    ],
                    "events": [
                        {
                            "entity_id": "21000015638",
                            "uuid": "5495a4f3-0dd4-4e2b-9ec0-081f78e46891",
                            "key": "campaign_activated",
                            "timestamp": 1700000000000,
                        }
                    ],
                }
            ],
        }
    ],
}


def _body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(IMPRESSION)
    target: Any = doc
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()
EVENT = ("visitors", 0, "snapshots", 0, "events", 0)
DECISION = ("visitors", 0, "snapshots", 0, "decisions", 0)
V = "$.visitors[0]"
E = V + ".snapshots[0].events[0]"
D = V + ".snapshots[0].decisions[0]"


def test_decodes_an_impression() -> None:
    payload = decode_payload(_body(IMPRESSION))
    assert isinstance(payload, Payload)
    visitor = payload.visitors[0]
    assert visitor.visitor_id == "user-1"
    assert visitor.attributes[1].value == 30
    decision = visitor.snapshots[0].decisions[0]
    assert isinstance(decision, Decision)
    assert decision.metadata is not None and decision.metadata.rule_type == "experiment"
    assert decision.is_campaign_holdback is False
    event = visitor.snapshots[0].events[0]
    assert isinstance(event, SnapshotEvent)
    assert (event.timestamp, event.revenue, event.value, event.tags) == (
        1700000000000,
        None,
        None,
        None,
    )


def test_accepts_str_bytes_and_memoryview() -> None:
    text = json.dumps(IMPRESSION)
    assert decode_payload(text) == decode_payload(text.encode())
    assert decode_payload(memoryview(text.encode())) == decode_payload(bytearray(text.encode()))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        # conversions carry no decisions
        (("visitors", 0, "snapshots", 0, "decisions"), _DELETE),
        # a flag decision without variation
        ((*DECISION, "variation_id"), None),
        ((*DECISION, "metadata"), None),
        ((*DECISION, "metadata"), _DELETE),
        ((*DECISION, "is_campaign_holdback"), True),
        ((*DECISION, "metadata", "cmab_uuid"), "c-1"),
        (("visitors", 0, "attributes"), _DELETE),
        (("visitors", 0, "attributes"), []),
        (("visitors", 0, "session_id"), "s-1"),
        (("visitors", 0, "session_id"), None),
        (("visitors", 0, "attributes", 0, "value"), True),
        (("visitors", 0, "attributes", 0, "value"), 1.5),
        ((*EVENT, "revenue"), 4200),
        ((*EVENT, "revenue"), None),
        ((*EVENT, "value"), 3.5),
        ((*EVENT, "value"), 3),
        ((*EVENT, "value"), None),
        ((*EVENT, "tags"), {"revenue": 4200, "nested": {"a": [1, None]}}),
        ((*EVENT, "tags"), None),
        ((*EVENT, "entity_id"), "20600000001"),  # a conversion's event id
        (("project_id",), None),
        (("revision",), _DELETE),
        (("client_name",), _DELETE),
        (("anonymize_ip",), _DELETE),
        (("enrich_decisions",), None),
        (("visitors",), []),
        # unknown fields are ignored at every level
        (("brand_new_field",), {"x": 1}),
        (("visitors", 0, "extra"), 1),
        ((*EVENT, "extra"), [1]),
        ((*DECISION, "extra"), "x"),
    ],
)
def test_lenient_on_shape(path: tuple[Any, ...], value: Any) -> None:
    decode_payload(_body(_with(path, value)))


@pytest.mark.parametrize(
    ("path", "value", "error_path", "expected"),
    [
        ((*EVENT, "timestamp"), "1700000000000", E + ".timestamp", "int"),
        ((*EVENT, "timestamp"), 1.7e12, E + ".timestamp", "int"),
        ((*EVENT, "timestamp"), -1, E + ".timestamp", ">= 0"),
        ((*EVENT, "revenue"), "4200", E + ".revenue", "int"),
        ((*EVENT, "revenue"), 42.5, E + ".revenue", "int"),
        ((*EVENT, "revenue"), True, E + ".revenue", "int"),
        ((*EVENT, "revenue"), 2**63, E + ".revenue", "<="),
        ((*EVENT, "value"), "3.5", E + ".value", "float"),
        ((*EVENT, "uuid"), _DELETE, E, "uuid"),
        ((*EVENT, "entity_id"), 123, E + ".entity_id", "str"),
        ((*EVENT, "tags"), [1], E + ".tags", "object"),
        ((*DECISION, "variation_id"), 5, D + ".variation_id", "str"),
        ((*DECISION, "variation_id"), _DELETE, D, "variation_id"),
        ((*DECISION, "metadata", "enabled"), "true", D + ".metadata.enabled", "bool"),
        (
            ("visitors", 0, "snapshots", 0, "decisions"),
            None,
            V + ".snapshots[0].decisions",
            "array",
        ),
        (("visitors", 0, "attributes", 1, "value"), None, V + ".attributes[1].value", "got `null`"),
        (
            ("visitors", 0, "attributes", 1, "value"),
            [30],
            V + ".attributes[1].value",
            "got `array`",
        ),
        (("visitors", 0, "visitor_id"), _DELETE, "$.visitors[0]", "visitor_id"),
        (("visitors", 0, "snapshots"), _DELETE, "$.visitors[0]", "snapshots"),
        (("anonymize_ip",), "true", "$.anonymize_ip", "bool"),
        (("enrich_decisions",), 1, "$.enrich_decisions", "bool"),
        (("account_id",), 10367498574, "$.account_id", "str"),
        (("account_id",), _DELETE, "$", "account_id"),
        (("visitors",), {}, "$.visitors", "array"),
    ],
)
def test_strict_on_types_with_the_path_of_the_error(
    path: tuple[Any, ...], value: Any, error_path: str, expected: str
) -> None:
    with pytest.raises(PayloadSchemaError) as info:
        decode_payload(_body(_with(path, value)))
    error = info.value
    assert isinstance(error, PayloadError)
    assert isinstance(error, ValueError)
    assert error.path == error_path
    assert expected in error.detail
    assert str(error) == f"invalid event payload at {error_path}: {error.detail}"


def test_only_the_first_error_is_reported() -> None:
    doc = _with((*EVENT, "timestamp"), "x")
    doc["visitors"].append(copy.deepcopy(doc["visitors"][0]))
    doc["visitors"][1]["visitor_id"] = 5
    with pytest.raises(PayloadSchemaError) as info:
        decode_payload(_body(doc))
    assert info.value.path == E + ".timestamp"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"not json", "not valid JSON"),
        (b'{"account_id": "1", "visitors": []} trailing', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "Expected `object`, got `array`"),
        (b"null", "Expected `object`, got `null`"),
    ],
)
def test_malformed_documents_fail_at_the_root(body: bytes, expected: str) -> None:
    with pytest.raises(PayloadSchemaError) as info:
        decode_payload(body)
    assert info.value.path == "$"
    assert expected in str(info.value)


def test_encode_matches_sdk_output_and_round_trips() -> None:
    assert json.loads(encode_payload(decode_payload(_body(IMPRESSION)))) == IMPRESSION
    conversion = _with(("visitors", 0, "snapshots", 0, "decisions"), _DELETE)
    assert json.loads(encode_payload(decode_payload(_body(conversion)))) == conversion
    null_variation = _with((*DECISION, "variation_id"), None)
    encoded = json.loads(encode_payload(decode_payload(_body(null_variation))))
    assert encoded["visitors"][0]["snapshots"][0]["decisions"][0]["variation_id"] is None


def test_schema_error_pickles() -> None:
    error = PayloadSchemaError("Expected `int`, got `str`", "$.x")
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.path, clone.detail, str(clone)) == (error.path, error.detail, str(error))
