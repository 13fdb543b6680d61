"""use_fast_uuids(): the official SDK's events get xpevents' uuids, and only its events."""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

from xpevents.official import use_fast_uuids

V4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class Recorder:
    def __init__(self) -> None:
        self.uuids: list[str] = []

    def dispatch_event(self, event: Any) -> None:
        for visitor in event.params["visitors"]:
            for snapshot in visitor["snapshots"]:
                self.uuids.extend(e["uuid"] for e in snapshot["events"])


def _sdk(datafile_text: str, recorder: Recorder) -> Any:
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor

    return optimizely.Optimizely(
        datafile_text,
        event_dispatcher=recorder,
        event_processor=ForwardingEventProcessor(recorder),
    )


def test_fast_uuids_are_v4_unique_and_restorable(datafile_text: str) -> None:
    from optimizely.event import user_event

    recorder = Recorder()
    sdk = _sdk(datafile_text, recorder)
    restore = use_fast_uuids()
    try:
        assert uuid.uuid4 is not user_event.uuid.uuid4  # the stdlib is left alone
        for i in range(2000):
            sdk.activate("checkout_button_color", f"user-{i}")
            sdk.track("purchase", f"user-{i}")
        assert len(recorder.uuids) == 4000
        assert len(set(recorder.uuids)) == 4000
        assert all(V4.match(u) for u in recorder.uuids)
    finally:
        restore()
        sdk.close()
    assert user_event.uuid is uuid


def test_forked_workers_draw_different_uuids(datafile_text: str) -> None:
    restore = use_fast_uuids()
    try:
        reads = []
        for _ in range(3):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # child: the parent's generator state must not be replayed
                os.close(r)
                recorder = Recorder()
                sdk = _sdk(datafile_text, recorder)
                for i in range(200):
                    sdk.activate("checkout_button_color", f"user-{i}")
                os.write(w, "\n".join(recorder.uuids).encode())
                os._exit(0)
            os.close(w)
            reads.append((pid, r))
        seen: list[str] = []
        for pid, r in reads:
            with os.fdopen(r) as f:
                seen.extend(f.read().split())
            os.waitpid(pid, 0)
        assert len(seen) == 600
        assert len(set(seen)) == 600
    finally:
        restore()
