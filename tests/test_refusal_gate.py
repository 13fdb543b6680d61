"""A full ``drop_newest`` queue: the client counts a refused event without building it
(``xpevents.dispatch.gate``), unless something could see the event; nothing else changes."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from xpevents import Client
from xpevents.client.notifications import NotificationType
from xpevents.dispatch.batch import BatchDispatcher
from xpevents.testing import CollectorHandle

EXPERIMENT = "checkout_button_color"


def _held_back(endpoint: str, **options: Any) -> BatchDispatcher:
    """A dispatcher of 5 visitors that sends only when flushed."""
    return BatchDispatcher(
        endpoint=endpoint,
        max_queue_events=5,
        batch_size=1000,
        flush_interval=3600,
        atexit_timeout=None,
        **options,
    )


def _impressions(client: Client, users: range, prefix: str) -> int:
    return sum(client.activate(EXPERIMENT, f"{prefix}-{i}") is not None for i in users)


def test_a_full_queue_counts_refusals_and_reopens_once_drained(
    collector: CollectorHandle, datafile_text: str
) -> None:
    dispatcher = _held_back(collector.base_url)
    client = Client(datafile_text, event_dispatcher=dispatcher)
    assert dispatcher.refusal_gate is not None
    made = _impressions(client, range(40), "full")
    for i in range(10):
        client.track("purchase", f"full-{i}")
    assert made > 5
    stats = dispatcher.stats()
    assert stats.dropped == {"queue_full": made + 10 - 5}  # every refusal counted
    assert stats.queue_depth == 5
    assert dispatcher.refusal_gate.shut
    assert dispatcher.flush(10).pending == 0
    assert collector.wait_for(unique_events=5, timeout=10)["unique_events"] == 5
    later = _impressions(client, range(3), "after")  # room again: accepted, not refused
    assert dispatcher.stats().dropped == {"queue_full": made + 10 - 5}
    assert not dispatcher.refusal_gate.shut
    dispatcher.close(10)
    stats = collector.wait_for(unique_events=5 + later, timeout=10)
    assert stats["unique_events"] == 5 + later and stats["duplicates"] == 0


def test_listeners_and_on_drop_still_get_every_refused_event(
    collector: CollectorHandle, datafile_text: str
) -> None:
    dropped: list[tuple[Any, str]] = []
    dispatcher = _held_back(collector.base_url, on_drop=lambda e, r: dropped.append((e, r)))
    client = Client(datafile_text, event_dispatcher=dispatcher)
    made = _impressions(client, range(30), "dropcb")
    assert len(dropped) == made - 5
    assert all(reason == "queue_full" for _, reason in dropped)
    assert all(
        event.params["visitors"][0]["visitor_id"].startswith("dropcb-") for event, _ in dropped
    )
    dispatcher.close(1)

    seen: list[Any] = []
    dispatcher = _held_back(collector.base_url)
    client = Client(datafile_text, event_dispatcher=dispatcher)
    client.notification_center.add_notification_listener(NotificationType.LOG_EVENT, seen.append)
    made = _impressions(client, range(30), "listened")
    assert len(seen) == made  # built for the listener, refused or not
    assert dispatcher.stats().dropped == {"queue_full": made - 5}
    dispatcher.close(1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_accepts_its_own_events_behind_the_parents_full_queue(
    collector: CollectorHandle, datafile_text: str
) -> None:
    dispatcher = _held_back(collector.base_url)
    client = Client(datafile_text, event_dispatcher=dispatcher)
    _impressions(client, range(30), "parent")
    assert dispatcher.refusal_gate is not None and dispatcher.refusal_gate.shut
    pid = os.fork()
    if pid == 0:  # the child: its queue starts empty, so its events are taken
        code = 1
        try:
            made = _impressions(client, range(3), "child")
            outcome = dispatcher.flush(10)
            stats = dispatcher.stats()
            code = (
                0 if made == stats.delivered and outcome.pending == 0 and not stats.dropped else 2
            )
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert dispatcher.flush(10).pending == 0
    dispatcher.close(10)
    ids = [e["visitor_id"] for e in collector.events(limit=1000)]
    assert sum(v.startswith("child-") for v in ids) >= 1
    assert sum(v.startswith("parent-") for v in ids) == 5


_C_FORK_CHILD = """
import ctypes, os
from xpevents.dispatch.drops import Drops
from xpevents.dispatch.gate import RefusalGate
from xpevents.spool.memory import MemorySpool
from xpevents.stats import StatsRecorder

memory = MemorySpool(max_events=2)
assert memory.offer(b"{}", [b"{}", b"{}"], 0.0)
recorder = StatsRecorder()
gate = RefusalGate(memory, Drops(recorder, None))
gate.shut = True
assert gate.refuse() and recorder.dropped == {"queue_full": 1}  # refused here
read, write = os.pipe()
pid = ctypes.PyDLL(None).fork()  # keeps the GIL across the call (CDLL drops it)
if pid == 0:
    try:
        os.write(write, b"refused" if gate.refuse() else b"built")
    finally:
        os._exit(0)
os.close(write)
answer = os.read(read, 16)
os.waitpid(pid, 0)
print(answer.decode())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="calls glibc's fork() through ctypes")
def test_the_gate_refuses_nothing_in_a_child_forked_without_python_hooks() -> None:
    """uWSGI forks from C: no at-fork hook resets the dispatcher before the child's
    first event, so the gate must see the other process and let the event be built
    (the build resets the dispatcher through the uuid generator's fork mark).

    In a fresh interpreter with no other thread: after a fork from C, CPython cannot
    hand the GIL back from threads that no longer exist (this test process has many)."""
    done = subprocess.run(
        [sys.executable, "-c", _C_FORK_CHILD], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "built"
