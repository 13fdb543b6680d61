"""Instructions per call of the hot paths, counted by valgrind's callgrind.

Wall-clock figures on a shared 2-core box move by 5-20% between identical runs; an
instruction count does not (it is the same for the same binary and inputs, whatever
else the machine is doing). Each figure is (Ir(2N) - Ir(N)) / N: the process start,
imports and setup cancel out. ``gc`` is disabled in the measured process so a
collection falling into one run and not the other does not add noise.

    python -m bench._callgrind                      # every call, N=5000
    python -m bench._callgrind activate decide -n 2000
    PYTHONPATH=/path/to/other/tree/src python -m bench._callgrind   # another tree

Not part of ``make bench`` (valgrind is slow: about a minute per figure).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

CALLS = (
    "dispatch_event",
    "activate",
    "activate_batch",
    "track",
    "track_batch",
    "decide",
    "is_feature_enabled",
)

_CHILD = r"""
import gc, logging, sys
gc.disable()
logging.disable(logging.CRITICAL)
from importlib import resources
from xpevents import BatchDispatcher, Client, LogEvent

what, n = sys.argv[1], int(sys.argv[2])
users = [f"user-{i}" for i in range(40000)][:n]
attrs = {"country": "US"}

class Null:
    def dispatch_event(self, event):
        pass

def event(i):
    visitor = {"visitor_id": f"u{i}", "attributes": [], "snapshots": [{
        "decisions": [{"campaign_id": "c", "experiment_id": "e", "variation_id": "v"}],
        "events": [{"entity_id": "c", "type": "campaign_activated", "key": "campaign_activated",
                    "timestamp": 1700000000000 + i, "uuid": f"{i:032x}"}]}]}
    return LogEvent("https://logx.optimizely.com/v1/events", {
        "account_id": "1", "project_id": "2", "revision": "3", "client_name": "python-sdk",
        "client_version": "5.7.0", "anonymize_ip": False, "enrich_decisions": True,
        "visitors": [visitor]})

if what == "dispatch_event":
    events = [event(i) for i in range(40000)][:n]
    d = BatchDispatcher(endpoint="http://127.0.0.1:9", flush_interval=3600, batch_size=10**7,
                        max_queue_events=10**7, atexit_timeout=None, max_concurrent_requests=1)
    d.dispatch_event(events[0])
    for ev in events:
        d.dispatch_event(ev)
else:
    datafile = resources.files("xpevents").joinpath("example_datafile.json").read_text()
    dispatcher = Null()
    if what.endswith("_batch"):  # the caller's side of BatchDispatcher: nothing is sent
        what = what[: -len("_batch")]
        dispatcher = BatchDispatcher(endpoint="http://127.0.0.1:9", flush_interval=3600,
                                     batch_size=10**7, max_queue_events=10**7,
                                     atexit_timeout=None, max_concurrent_requests=1)
    c = Client(datafile, event_dispatcher=dispatcher)
    for u in users[:10]: c.activate("checkout_button_color", u, attrs)
    if what == "activate":
        for u in users: c.activate("checkout_button_color", u, attrs)
    elif what == "track":
        for u in users: c.track("purchase", u, attrs, {"revenue": 100})
    elif what == "decide":
        for u in users: c.decide(u, "new_checkout", attrs)
    elif what == "is_feature_enabled":
        for u in users: c.is_feature_enabled("new_checkout", u, attrs)
"""


def _instructions(script: str, what: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        subprocess.run(
            [*command, sys.executable, script, what, str(n)],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with open(out, encoding="utf-8") as f:
            match = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
    if match is None:
        raise RuntimeError("callgrind wrote no totals")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("calls", nargs="*", default=list(CALLS), help=", ".join(CALLS))
    parser.add_argument("-n", type=int, default=5000, help="calls in the shorter run")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as child:
        child.write(_CHILD)
    try:
        print(f"instructions per call (callgrind, (Ir(2N) - Ir(N)) / N, N={args.n})")
        for what in args.calls:
            low = _instructions(child.name, what, args.n)
            high = _instructions(child.name, what, 2 * args.n)
            print(f"{what:20s} {(high - low) / args.n:10,.0f}", flush=True)
    finally:
        os.unlink(child.name)


if __name__ == "__main__":
    main()
