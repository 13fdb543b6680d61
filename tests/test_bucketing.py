"""Bucketing: murmur3 values, traffic walk, bucketing id."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from optimizely.lib import pymmh3

from xpevents.decide.bucketing import Allocation, bucket_value, get_bucketing_id


def official_bucket(key: str) -> int:
    h = pymmh3.hash(key, 1) & 0xFFFFFFFF
    return math.floor(float(h) / 2**32 * 10000)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=40))
def test_bucket_value_matches_official_formula(key: str) -> None:
    assert bucket_value(key) == official_bucket(key)
    assert 0 <= bucket_value(key) < 10000


def first_match(ranges: list[tuple[int, str]], bucket: int) -> str | None:
    for end, target in ranges:
        if bucket < end:
            return target
    return None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-5, 10005), st.sampled_from("abcd")), max_size=6),
    st.integers(0, 9999),
)
def test_allocation_is_first_match(ranges: list[tuple[int, str]], bucket: int) -> None:
    assert Allocation(ranges).find(bucket) == first_match(ranges, bucket)


def test_allocation_edges() -> None:
    alloc = Allocation([(3333, "a"), (6666, "b"), (10000, "c")])
    assert alloc.find(0) == "a"
    assert alloc.find(3332) == "a"
    assert alloc.find(3333) == "b"
    assert alloc.find(9999) == "c"
    assert Allocation([(5000, "a")]).find(5000) is None
    assert Allocation([]).find(0) is None


def test_bucketing_id() -> None:
    assert get_bucketing_id("u", {}) == "u"
    assert get_bucketing_id("u", {"$opt_bucketing_id": "b"}) == "b"
    assert get_bucketing_id("u", {"$opt_bucketing_id": ""}) == ""
    assert get_bucketing_id("u", {"$opt_bucketing_id": 5}) == "u"
    assert get_bucketing_id("u", {"$opt_bucketing_id": None}) == "u"
