"""``xpevents demo``: the whole pipeline on loopback, end to end.

Starts a collector on an ephemeral 127.0.0.1 port, drives simulated users through
:class:`xpevents.Client` (activate, decide, track) with the chosen dispatcher pointed
at that collector, shows delivery progress, and prints what was sent next to what the
collector counted. Nothing leaves the machine.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from xpevents.dispatch.protocol import EventDispatcher
from xpevents.example import example_datafile

if TYPE_CHECKING:
    from xpevents.client import Client
    from xpevents.testing import CollectorHandle

COUNTRIES = ("US", "CA", "GB", "DE", "FR", "BR", "IN", "JP")
DEVICES = ("ios", "android", "desktop", "tablet")
VERSIONS = ("2.1.0", "2.3.0", "2.3.5", "3.0.0-beta", "3.1.2")


@dataclass
class Sent:
    """What the simulated users did."""

    users: int = 0
    activates: int = 0
    impressions: int = 0
    decisions: int = 0
    conversions: int = 0


def _attributes(rng: random.Random) -> dict[str, Any]:
    return {
        "country": rng.choice(COUNTRIES),
        "age": rng.randint(13, 80),
        "is_premium": rng.random() < 0.2,
        "app_version": rng.choice(VERSIONS),
        "device_type": rng.choice(DEVICES),
    }


def make_dispatcher(kind: str, endpoint: str) -> EventDispatcher:
    """The dispatcher the demo drives: ``batch`` (default) or ``default`` (synchronous)."""
    if kind == "batch":
        from xpevents.dispatch.batch import BatchDispatcher

        return BatchDispatcher(endpoint=endpoint)
    from xpevents.dispatch.default import DefaultEventDispatcher

    return DefaultEventDispatcher(endpoint=endpoint)


def run(
    *,
    users: int = 2000,
    dispatcher_kind: str = "batch",
    latency_ms: int = 0,
    fail_rate: float = 0.0,
    seed: int = 1,
    console: Console | None = None,
    datafile_change: bool = True,
) -> dict[str, Any]:
    """Run the demo; returns a summary dict (used by the tests).

    ``datafile_change``: then run the datafile step (:mod:`xpevents.demo_datafile`):
    the collector serves a datafile, a polling client follows it, a new revision moves
    an experiment's traffic to another variation mid-run.
    """
    from xpevents.client import Client
    from xpevents.testing import run_collector

    console = console or Console()
    rng = random.Random(seed)
    sent = Sent()
    with run_collector(latency_ms=latency_ms, fail_rate=fail_rate, seed=seed) as collector:
        console.print(
            f"collector on [bold]{collector.base_url}[/]; dispatcher: "
            f"[bold]{dispatcher_kind}[/]; {users} simulated users"
        )
        dispatcher = make_dispatcher(dispatcher_kind, collector.base_url)
        client = Client(example_datafile(), event_dispatcher=dispatcher)
        started = time.perf_counter()
        with _progress(console) as progress:
            _simulate(client, rng, users, sent, progress)
            produced = time.perf_counter() - started
            # decide() impressions are only sent for some rules; count what went out.
            expected = _dispatched_visitors(dispatcher)
            _await_delivery(collector, expected, progress)
        client.close(timeout=30)
        if hasattr(dispatcher, "close"):
            dispatcher.close(timeout=30)
        total = time.perf_counter() - started
        stats = collector.stats()
        dstats = dispatcher.stats().as_dict() if hasattr(dispatcher, "stats") else {}
        _print_summary(console, _summary(sent, expected, stats, dstats, produced, total))
        change = None
        if datafile_change:
            from xpevents.demo_datafile import datafile_step

            step_users = max(50, min(users, 500))
            change = datafile_step(collector, example_datafile(), users=step_users, console=console)
    summary = _summary(sent, expected, stats, dstats, produced, total)
    summary["datafile_change"] = change
    return summary


def _summary(
    sent: Sent,
    expected: int,
    stats: dict[str, Any],
    dstats: dict[str, Any],
    produced: float,
    total: float,
) -> dict[str, Any]:
    return {
        "users": sent.users,
        "activates": sent.activates,
        "impressions_from_activate": sent.impressions,
        "decides": sent.decisions,
        "tracks": sent.conversions,
        "visitors_dispatched": expected,
        "collector": stats,
        "dispatcher": dstats,
        "seconds_producing": produced,
        "seconds_total": total,
    }


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:>7,.0f}/{task.total:,.0f}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _simulate(
    client: Client, rng: random.Random, users: int, sent: Sent, progress: Progress
) -> None:
    """Each user activates 3 experiments, decides 2 flags and converts with p = 0.3."""
    config = client.config
    assert config is not None  # the demo's client is built from a datafile
    experiments = sorted(config.experiments)
    flags = sorted(config.flags)
    event_keys = sorted(config.events)
    task_users = progress.add_task("users", total=users)
    for n in range(users):
        user_id = f"user-{n}"
        attributes = _attributes(rng)
        for key in rng.sample(experiments, 3):
            sent.activates += 1
            if client.activate(key, user_id, attributes) is not None:
                sent.impressions += 1
        for key in rng.sample(flags, 2):
            client.decide(user_id, key, attributes)
            sent.decisions += 1
        if rng.random() < 0.3:
            tags: dict[str, Any] = {}
            if rng.random() < 0.5:
                tags["revenue"] = rng.randint(100, 20000)
            client.track(rng.choice(event_keys), user_id, attributes, tags or None)
            sent.conversions += 1
        sent.users += 1
        progress.advance(task_users)


def _await_delivery(collector: CollectorHandle, expected: int, progress: Progress) -> None:
    """Show the collector's unique events until ``expected`` arrived (at most 120 s)."""
    task_delivered = progress.add_task("delivered", total=max(expected, 1))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        stats = collector.stats()
        progress.update(task_delivered, completed=stats["unique_events"])
        if stats["unique_events"] >= expected:
            break
        time.sleep(0.1)


def _dispatched_visitors(dispatcher: EventDispatcher) -> int:
    stats = getattr(dispatcher, "stats", None)
    if stats is None:
        return 0
    return int(stats().visitors)


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    collector = summary["collector"]
    dispatcher = summary["dispatcher"]
    table = Table(title="xpevents demo: sent vs received")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows: list[tuple[str, object]] = [
        ("simulated users", summary["users"]),
        ("activate calls", summary["activates"]),
        ("  of which bucketed (impressions)", summary["impressions_from_activate"]),
        ("decide calls", summary["decides"]),
        ("track calls (conversions)", summary["tracks"]),
        ("visitors handed to the dispatcher", summary["visitors_dispatched"]),
        ("dispatcher: delivered", dispatcher.get("delivered", "-")),
        ("dispatcher: requests", dispatcher.get("attempts", "-")),
        ("dispatcher: retried", dispatcher.get("retried", "-")),
        ("dispatcher: failed", dispatcher.get("failed", "-")),
        ("dispatcher: dropped", dispatcher.get("dropped", "-")),
        ("collector: requests by status", collector.get("requests_by_status", "-")),
        ("collector: unique events", collector.get("unique_events", "-")),
        ("collector: duplicates", collector.get("duplicates", "-")),
        ("time producing (s)", f"{summary['seconds_producing']:.2f}"),
        ("time until all delivered (s)", f"{summary['seconds_total']:.2f}"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    _print_splits(console, collector)
    console.print(verdict(summary))


def _print_splits(console: Console, collector: dict[str, Any]) -> None:
    # experiments that split traffic (rollout rules with one variation are left out)
    by_key = {k: v for k, v in (collector.get("impressions_by_key") or {}).items() if len(v) > 1}
    if by_key:
        table = Table(title="impressions per experiment and variation (by key)")
        table.add_column("experiment")
        table.add_column("split", justify="left")
        for experiment, variations in sorted(by_key.items()):
            total = sum(variations.values()) or 1
            split = ", ".join(
                f"{name} {count} ({100 * count / total:.0f}%)"
                for name, count in sorted(variations.items())
            )
            table.add_row(experiment, split)
        console.print(table)
    conversions: dict[str, int] = collector.get("conversions") or {}
    if conversions:
        revenue: dict[str, int] = collector.get("revenue") or {}
        table = Table(title="conversions")
        for column in ("event", "count", "revenue"):
            table.add_column(column, justify="right" if column != "event" else "left")
        for key, count in sorted(conversions.items()):
            table.add_row(key, str(count), f"{revenue.get(key, 0):,}")
        console.print(table)


def verdict(summary: dict[str, Any]) -> str:
    """One line: what arrived of what was sent, in how many requests, lost, duplicated."""
    collector = summary["collector"]
    expected = summary["visitors_dispatched"]
    arrived = collector.get("unique_events", 0)
    requests = sum(collector.get("requests_by_status", {}).values())
    lost = max(0, expected - arrived)
    duplicates = collector.get("duplicates", 0)
    mark = "[green]OK[/]" if lost == 0 and duplicates == 0 else "[red]NOT OK[/]"
    return (
        f"{mark} {arrived:,}/{expected:,} delivered in {requests:,} requests, {lost:,} lost, "
        f"{duplicates:,} duplicates"
    )
