"""Decisions and event building: xpevents.Client versus optimizely-sdk 5.7.0.

Both clients get the fixture datafile (20 experiments, a group, 10 flags with rollouts,
typed audiences) and a no-op dispatcher; the official one is wired with its
``ForwardingEventProcessor`` so that, like ours, it builds every event in the caller's
thread (its default ``BatchEventProcessor`` would move that work to a thread that competes
for the GIL, and drop most events past its 1,000-event queue). Every call runs once per
user, users round-robin over experiments and flags with a few attribute sets.

    python -m bench decisions            # 100k users
    XPEVENTS_BENCH_USERS=20000 python -m bench decisions
"""

from __future__ import annotations

import gc
import json
import logging
import platform
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATAFILE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "datafile.json"
ATTRIBUTE_SETS: list[dict[str, Any]] = [
    {"country": "US", "age": 34, "device_type": "mobile"},
    {"country": "FR", "age": 19, "is_premium": True},
    {},
    {"country": "DE", "app_version": "2.1.0", "device_type": "desktop", "age": 51.5},
]


class NoOpDispatcher:
    """Accepts every event and does nothing with it."""

    def dispatch_event(self, event: Any) -> None:
        return None


def _time_per_call(n: int, body: Callable[[int], object]) -> float:
    """µs per call of ``body(i)`` for ``i`` in ``range(n)``."""
    gc.collect()
    start = time.perf_counter()
    for i in range(n):
        body(i)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor

    from xpevents.client import Client
    from xpevents.events.uuids import uuid4_str

    logging.disable(logging.CRITICAL)  # both clients log per call at INFO/DEBUG otherwise
    from bench._common import knob, load_average
    from bench._results import save

    users = int(knob("decisions", "USERS", "100000", "users (one call each)"))
    started = load_average()
    saved: list[dict[str, Any]] = []
    text = DATAFILE.read_text()
    datafile = json.loads(text)
    experiments = [e["key"] for e in datafile["experiments"]] + [
        e["key"] for g in datafile["groups"] for e in g["experiments"]
    ]
    flags = [f["key"] for f in datafile["featureFlags"]]
    events = [e["key"] for e in datafile["events"]]
    ids = [f"user-{i}" for i in range(users)]
    n_exp, n_flag, n_ev, n_attr = len(experiments), len(flags), len(events), len(ATTRIBUTE_SETS)

    official = optimizely.Optimizely(
        text, event_processor=ForwardingEventProcessor(NoOpDispatcher())
    )
    ours = Client(datafile, NoOpDispatcher())
    tags = {"revenue": 4200, "value": 1.5, "category": "shoes"}

    def rows_for(sdk: Any, is_ours: bool) -> dict[str, Callable[[int], object]]:
        def get_variation(i: int) -> object:
            return sdk.get_variation(experiments[i % n_exp], ids[i], ATTRIBUTE_SETS[i % n_attr])

        def activate(i: int) -> object:
            return sdk.activate(experiments[i % n_exp], ids[i], ATTRIBUTE_SETS[i % n_attr])

        def track(i: int) -> object:
            return sdk.track(events[i % n_ev], ids[i], ATTRIBUTE_SETS[i % n_attr], tags)

        def decide_context(i: int) -> object:
            user = sdk.create_user_context(ids[i], ATTRIBUTE_SETS[i % n_attr])
            return user.decide(flags[i % n_flag])

        def decide_direct(i: int) -> object:
            return sdk.decide(ids[i], flags[i % n_flag], ATTRIBUTE_SETS[i % n_attr])

        decide = decide_direct if is_ours else decide_context

        def mixed(i: int) -> object:
            activate(i)
            track(i)
            return decide(i)

        return {
            "get_variation": get_variation,
            "activate": activate,
            "track": track,
            "decide (Client.decide / official user context)": decide,
            "user_context.decide (both)": decide_context,
            "mixed: activate + track + decide": mixed,
        }

    official_rows = rows_for(official, False)
    our_rows = rows_for(ours, True)
    print(
        f"fixture datafile, {users:,} users, no-op dispatchers, CPython {platform.python_version()}"
    )
    print(f"{'call':<50} {'optimizely-sdk':>15} {'xpevents':>10} {'ratio':>7}")
    for name in official_rows:
        theirs = _time_per_call(users, official_rows[name])
        mine = _time_per_call(users, our_rows[name])
        saved.append({"call": name, "official_us": theirs, "xpevents_us": mine})
        saved[-1]["ratio"] = theirs / mine
        print(f"{name:<50} {theirs:>12.2f} µs {mine:>7.2f} µs {theirs / mine:>6.1f}x")
    std = _time_per_call(users, lambda i: str(uuid.uuid4()))
    cheap = _time_per_call(users, lambda i: uuid4_str())
    label = "uuid: str(uuid.uuid4()) vs uuid4_str()"
    print(f"{label:<50} {std:>12.2f} µs {cheap:>7.2f} µs {std / cheap:>6.1f}x")
    saved.append({"call": label, "official_us": std, "xpevents_us": cheap, "ratio": std / cheap})
    save("decisions", {"users": users, "rows": saved, "load_average_at_start": started})
    sticky_and_holdout_rows(datafile, flags, ids, users)
    logging.disable(logging.NOTSET)


class OfficialMemoryUPS:
    """An in-memory UPS for optimizely-sdk, as its README shows: a dict of profiles."""

    def __init__(self) -> None:
        self.profiles: dict[str, Any] = {}

    def lookup(self, user_id: str) -> Any:
        return self.profiles.get(user_id)

    def save(self, user_profile: dict[str, Any]) -> None:
        self.profiles[user_profile["user_id"]] = user_profile


def _with_holdout(datafile: dict[str, Any]) -> dict[str, Any]:
    """The fixture with a running global holdout of 5% (audience-free)."""
    doc = json.loads(json.dumps(datafile))
    doc["holdouts"] = [
        {
            "id": "hold-1",
            "key": "global_holdout",
            "status": "Running",
            "variations": [{"id": "hold-off", "key": "off", "featureEnabled": False}],
            "trafficAllocation": [{"entityId": "hold-off", "endOfRange": 500}],
            "audienceIds": [],
        }
    ]
    return doc


def sticky_and_holdout_rows(
    datafile: dict[str, Any], flags: list[str], ids: list[str], users: int
) -> None:
    """decide with each profile store, vs the official SDK with its own memory UPS."""
    import tempfile

    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor

    from xpevents.client import Client
    from xpevents.profiles import MemoryProfileStore, RedisProfileStore, SQLiteProfileStore

    n_flag, n_attr = len(flags), len(ATTRIBUTE_SETS)
    text = json.dumps(datafile)

    def official(ups: Any, doc: str = text) -> Any:
        return optimizely.Optimizely(
            doc,
            user_profile_service=ups,
            event_processor=ForwardingEventProcessor(NoOpDispatcher()),
        )

    def ours(ups: Any, doc: dict[str, Any] = datafile) -> Client:
        return Client(doc, NoOpDispatcher(), user_profile_service=ups)

    def ours_decide(client: Client) -> Callable[[int], object]:
        # each user twice: the first call stores, the second finds the profile
        return lambda i: client.decide(ids[i // 2], flags[i % n_flag], ATTRIBUTE_SETS[i % n_attr])

    def official_decide(sdk: Any) -> Callable[[int], object]:
        def call(i: int) -> object:
            user = sdk.create_user_context(ids[i // 2], ATTRIBUTE_SETS[i % n_attr])
            return user.decide(flags[i % n_flag])

        return call

    print()
    print(f"sticky bucketing: each of {users // 2:,} users decided twice (store, then hit)")
    print(f"{'call':<50} {'optimizely-sdk':>15} {'xpevents':>10} {'ratio':>7}")
    theirs = _time_per_call(users, official_decide(official(OfficialMemoryUPS())))
    mine = _time_per_call(users, ours_decide(ours(MemoryProfileStore())))
    label = "decide, memory UPS (official: README dict UPS)"
    print(f"{label:<50} {theirs:>12.2f} µs {mine:>7.2f} µs {theirs / mine:>6.1f}x")
    base = _time_per_call(users, ours_decide(ours(None)))
    print(f"{'decide, no UPS (xpevents only)':<50} {'':>15} {base:>7.2f} µs")
    n_io = max(2, users // 10)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteProfileStore(Path(tmp) / "profiles.db")
        sqlite_us = _time_per_call(n_io, ours_decide(ours(store)))
        print(f"{'decide, SQLiteProfileStore (xpevents only)':<50} {'':>15} {sqlite_us:>7.2f} µs")
    redis_store = RedisProfileStore(prefix=f"bench:{uuid.uuid4().hex}:", socket_timeout=0.5)
    if redis_store.lookup("probe") is None and redis_store.stats().errors == 0:
        redis_us = _time_per_call(n_io, ours_decide(ours(redis_store)))
        label = "decide, RedisProfileStore 127.0.0.1 (xpevents only)"
        print(f"{label:<50} {'':>15} {redis_us:>7.2f} µs")
    else:
        print("decide, RedisProfileStore: skipped (no Redis at 127.0.0.1:6379)")
    held = _with_holdout(datafile)
    theirs = _time_per_call(users, official_decide(official(None, json.dumps(held))))
    mine = _time_per_call(users, ours_decide(ours(None, held)))
    label = "decide, datafile with a 5% global holdout"
    print(f"{label:<50} {theirs:>12.2f} µs {mine:>7.2f} µs {theirs / mine:>6.1f}x")


if __name__ == "__main__":
    main()
