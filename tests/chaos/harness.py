"""What the chaos tests share: a producer process to SIGKILL, the ledger of what was
acknowledged, and the count of what the collector received.

A *producer* is a child process that dispatches one visitor at a time and prints the
visitor's uuid once ``dispatch_event`` (or the relay's 204) returned: that line is the
acknowledgement. The parent reads the lines, kills the child at a random moment (a
fixed seed), and starts the next one on the same spool. At the end the tally compares
the acknowledged uuids with those the collector stored: ``lost`` must be 0 where
durability is promised; ``duplicates`` are allowed (at least once) and counted.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from xpevents.testing import CollectorHandle

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

_PRODUCER = """
import sys, time
sys.path.insert(0, {tests!r})
from payloads import payload, visitor
from xpevents import BatchDispatcher, LogEvent
URL = "https://logx.optimizely.com/v1/events"
bd = BatchDispatcher(spool={spool!r}, endpoint={endpoint!r}, flush_interval=0.02,
                     batch_size=25, durability={durability!r}, lease=1.0)
print("ready", flush=True)
while True:
    one = visitor()
    bd.dispatch_event(LogEvent(URL, payload([one])))
    print(one["snapshots"][0]["events"][0]["uuid"], flush=True)
    time.sleep(0.0005)
"""

_CLIENT = """
import sys, time, httpx, json
sys.path.insert(0, {tests!r})
from payloads import payload, visitor
http = httpx.Client(base_url={base!r}, trust_env=False, timeout=5)
print("ready", flush=True)
while True:
    one = visitor()
    try:
        answer = http.post("/v1/events", json=payload([one]))
    except httpx.HTTPError:
        time.sleep(0.01)
        continue
    if answer.status_code == 204:
        print(one["snapshots"][0]["events"][0]["uuid"], flush=True)
    else:
        print("refused " + str(answer.status_code), flush=True)
    time.sleep(0.0005)
"""


@dataclass
class Ledger:
    """What was acknowledged (uuids), and what was refused, across processes."""

    acknowledged: set[str] = field(default_factory=set)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            text = line.strip()
            if not text or text == "ready":
                continue
            with self.lock:
                if text.startswith("refused"):
                    self.refused += 1
                else:
                    self.acknowledged.add(text)


def start_child(code: str, ledger: Ledger) -> tuple[subprocess.Popen[str], threading.Thread]:
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert child.stdout is not None
    first = child.stdout.readline().strip()
    assert first == "ready", f"the child did not start: {first!r}"
    reader = threading.Thread(target=ledger.read, args=(child.stdout,), daemon=True)
    reader.start()
    return child, reader


def kill(child: subprocess.Popen[str], reader: threading.Thread) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    reader.join(10)


def producer_code(spool: str, endpoint: str, durability: str = "always") -> str:
    return _PRODUCER.format(tests=str(TESTS), spool=spool, endpoint=endpoint, durability=durability)


def client_code(base_url: str) -> str:
    return _CLIENT.format(tests=str(TESTS), base=base_url)


def crash_loop(code: str, kills: int, seed: int, ledger: Ledger) -> None:
    """Start ``code``, SIGKILL it after 0.2-0.8 s (seeded), ``kills`` times."""
    rng = random.Random(seed)
    for _ in range(kills):
        child, reader = start_child(code, ledger)
        time.sleep(rng.uniform(0.2, 0.8))
        kill(child, reader)


def stored_uuids(collector: CollectorHandle) -> set[str]:
    out: set[str] = set()
    offset = 0
    while True:
        page = collector.events(limit=1000, offset=offset)
        out.update(e["uuid"] for e in page)
        if len(page) < 1000:
            return out
        offset += 1000


@dataclass
class Tally:
    acknowledged: int
    delivered: int
    lost: int
    duplicates: int
    refused: int = 0

    def line(self, name: str) -> str:
        return f"{name}: " + json.dumps(self.__dict__)


def wait_delivered(collector: CollectorHandle, wanted: set[str], timeout: float) -> set[str]:
    """The collector's uuids once every ``wanted`` one is there (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while True:
        stored = stored_uuids(collector)
        if wanted <= stored or time.monotonic() > deadline:
            return stored
        time.sleep(0.2)


def tally(collector: CollectorHandle, ledger: Ledger, timeout: float = 30.0) -> Tally:
    stored = wait_delivered(collector, ledger.acknowledged, timeout)
    stats = collector.stats()
    result = Tally(
        acknowledged=len(ledger.acknowledged),
        delivered=len(stored & ledger.acknowledged),
        lost=len(ledger.acknowledged - stored),
        duplicates=int(stats.get("duplicates", 0)),
        refused=ledger.refused,
    )
    print(result.line("tally"))  # the figures docs/reliability.md quotes (pytest -s)
    return result
