"""The floor of ``activate()`` on CPython: our client against a hand-flattened path.

The flattened path does only what an impression needs, in one function with every
lookup bound in advance: the experiment's plan, murmur3 bucketing and a binary search,
a uuid, the millisecond timestamp, the visitor bytes joined from the writer's cached
fragments, the event object, and one deque append. Nothing a real client can skip
(argument checks beyond ``type() is str``, forced variations, listeners, logging,
profile services) is in it, so it is a floor, not a competitor: the gap between it
and ``Client.activate`` is what the client's structure costs.

    python -m bench._floor            # 100,000 calls per variant, best of 5 rounds

Prints p50 / mean in µs per call for each variant (rounds interleaved, so a noisy
moment hits every variant alike). Not part of ``make bench``.
"""

from __future__ import annotations

import gc
import logging
import statistics
import sys
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from typing import Any

import mmh3

from bench._common import datafile_text, guard_network

EXPERIMENT = "checkout_button_color"


class _Null:
    def dispatch_event(self, event: Any) -> None:
        pass


def _variants() -> dict[str, tuple[Callable[[str], Any], Callable[[], None]]]:
    from xpevents import BatchDispatcher, Client
    from xpevents.events import uuids, wire
    from xpevents.events.wire import EncodedEvent

    null_client = Client(datafile_text(), event_dispatcher=_Null())
    null_client.activate(EXPERIMENT, "warm-up")
    queued: list[Any] = []

    def queued_activate(user_id: str) -> Any:
        return queued[-1].activate(EXPERIMENT, user_id)

    def fresh_queue() -> None:  # a new client and queue per round: memory stays bounded
        if queued:
            queued.pop().close(0)
        dispatcher = BatchDispatcher(
            endpoint="http://127.0.0.1:9",
            flush_interval=3600,
            batch_size=10**7,
            max_queue_events=10**8,
            atexit_timeout=None,
        )
        queued.append(Client(datafile_text(), event_dispatcher=dispatcher))
        queued[-1].activate(EXPERIMENT, "warm-up")

    engine = null_client._engine
    plan = engine.experiments._decider.quick_plans[EXPERIMENT]
    writer = engine.builder._writer
    head = engine.builder._event_head
    start, end = next(iter(writer._impressions.values()))
    ends, targets = plan.traffic.ends, plan.traffic.targets
    suffix, hash_, draw, time_ns = plan.bucket_suffix, mmh3.hash, uuids._draw, time.time_ns
    encode, prefix, attributes = wire.encode, b"01234567-89ab-4cde-", writer.attributes(None)
    queue: deque[Any] = deque()
    append, now = queue.append, time.time

    def flat(user_id: str) -> Any:
        if type(user_id) is not str:
            return None
        variation = targets[
            bisect_right(ends, (hash_(user_id + suffix, 1, signed=False) * 10000) >> 32)
        ]
        bits = draw(62)
        visitor = b"".join(
            (
                start,
                prefix,
                b"%04x-%012x" % (0x8000 | (bits >> 48), bits & 0xFFFFFFFFFFFF),
                b'","key":"campaign_activated","timestamp":',
                b"%d" % (time_ns() // 1_000_000),
                end,
                attributes,
                b',"visitor_id":',
                encode(user_id),
                b"}",
            )
        )
        event = EncodedEvent(head, visitor)
        append((b"envelope", event.wire, now()))
        return variation.key if variation is not None else None

    return {
        "flattened floor (decide + build + event + deque append)": (flat, queue.clear),
        "Client.activate, no-op dispatcher": (
            lambda u: null_client.activate(EXPERIMENT, u),
            lambda: None,
        ),
        "Client.activate, BatchDispatcher (queue only, nothing sent)": (
            queued_activate,
            fresh_queue,
        ),
    }


def main(n: int = 100_000, rounds: int = 5) -> None:
    guard_network()
    logging.getLogger("xpevents").setLevel(logging.CRITICAL)  # the unsent queues at close
    variants = _variants()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    perf = time.perf_counter
    for round_ in range(rounds):
        for name, (call, reset) in variants.items():
            reset()
            users = [f"user-{round_}-{i}" for i in range(n)]
            samples = []
            gc.collect()
            for user in users:
                t0 = perf()
                call(user)
                samples.append(perf() - t0)
            results[name].append(
                (statistics.median(samples) * 1e6, statistics.fmean(samples) * 1e6)
            )
    print(f"activate() floor, {n:,} calls per variant, best of {rounds} rounds (µs per call)")
    print(f"{'variant':62s} {'p50':>6s} {'mean':>6s}")
    for name, runs in results.items():
        print(f"{name:62s} {min(p for p, _ in runs):6.2f} {min(m for _, m in runs):6.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
