"""The demo's datafile step: a datafile change mid-run moves traffic to a new variation.

The collector serves the example datafile (``PUT /datafiles/demo.json``); a client
built with ``Client(config_manager=PollingConfigManager("demo", url_template=...))``
polls it on loopback. Users activate one experiment; then the datafile is replaced by a
newer revision that sends the experiment's whole traffic to its last variation; once
the poller swapped it in (``OPTIMIZELY_CONFIG_UPDATE``), more users activate. The table
shows each variation's share before and after, and how long the change took to reach
decisions.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

import httpx
from rich.table import Table

if TYPE_CHECKING:
    from rich.console import Console

    from xpevents.client import Client
    from xpevents.testing import CollectorHandle

__all__ = ["EXPERIMENT", "SDK_KEY", "datafile_step"]

SDK_KEY: Final = "demo"
EXPERIMENT: Final = "checkout_button_color"


def _moved(datafile: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The next revision: every user of ``EXPERIMENT`` goes to its last variation."""
    changed = json.loads(json.dumps(datafile))
    changed["revision"] = str(int(datafile["revision"]) + 1)
    experiment = next(e for e in changed["experiments"] if e["key"] == EXPERIMENT)
    target = experiment["variations"][-1]
    experiment["trafficAllocation"] = [{"entityId": target["id"], "endOfRange": 10000}]
    return changed, target["key"]


def _activate(client: Client, users: range, counts: Counter[str]) -> None:
    for n in users:
        counts[client.activate(EXPERIMENT, f"datafile-user-{n}") or "(none)"] += 1


def datafile_step(
    collector: CollectorHandle, datafile_text: str, *, users: int, console: Console
) -> dict[str, Any]:
    """Run the step against ``collector``; returns its summary (printed as a table)."""
    from xpevents.client import Client
    from xpevents.config import PollingConfigManager
    from xpevents.dispatch.batch import BatchDispatcher

    original = json.loads(datafile_text)
    changed, target = _moved(original)
    url = f"{collector.base_url}/datafiles/{SDK_KEY}.json"
    with httpx.Client(trust_env=False, timeout=10) as http:
        http.put(url, content=datafile_text).raise_for_status()
        manager = PollingConfigManager(
            SDK_KEY,
            url_template=collector.base_url + "/datafiles/{sdk_key}.json",
            update_interval=0.1,
            blocking_timeout=10,
        )
        swapped = threading.Event()
        dispatcher = BatchDispatcher(endpoint=collector.base_url)
        with Client(config_manager=manager, event_dispatcher=dispatcher) as client:
            client.notification_center.add_notification_listener(
                "OPTIMIZELY_CONFIG_UPDATE", swapped.set
            )
            before: Counter[str] = Counter()
            _activate(client, range(users), before)
            swapped.clear()
            changed_at = time.perf_counter()
            http.put(url, content=json.dumps(changed)).raise_for_status()
            swapped.wait(10)
            delay = time.perf_counter() - changed_at
            after: Counter[str] = Counter()
            _activate(client, range(users, 2 * users), after)
            revision = client.config_stats().revision
        dispatcher.close(timeout=30)
    summary = {
        "experiment": EXPERIMENT,
        "revisions": [original["revision"], revision],
        "before": dict(before),
        "after": dict(after),
        "target": target,
        "seconds_to_swap": delay,
        "delivered": dispatcher.stats().delivered,
    }
    _print(console, summary)
    return summary


def _print(console: Console, summary: dict[str, Any]) -> None:
    old, new = summary["revisions"]
    table = Table(title=f"datafile change mid-run: {summary['experiment']}, rev {old} -> {new}")
    table.add_column("variation")
    table.add_column(f"users before (rev {old})", justify="right")
    table.add_column(f"users after (rev {new})", justify="right")
    before, after = summary["before"], summary["after"]
    for variation in sorted(set(before) | set(after)):
        table.add_row(variation, str(before.get(variation, 0)), str(after.get(variation, 0)))
    table.caption = (
        f"new datafile in use {summary['seconds_to_swap'] * 1000:.0f} ms after the PUT "
        f"(poll interval 100 ms); {summary['delivered']} impressions delivered"
    )
    console.print(table)
