"""examples/script (atexit) and examples/multiprocessing (fork and spawn pools), for real."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from xpevents import ConfigError
from xpevents.integrations import pool
from xpevents.testing import CollectorHandle

from apps import EXAMPLES, example_env


def _run(folder: str, endpoint: str, *args: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=EXAMPLES / folder,
        env=example_env(EXAMPLES / folder, endpoint, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "lost" not in result.stderr, result.stderr
    return result.stdout


def test_a_plain_script_delivers_everything_at_exit(collector: CollectorHandle) -> None:
    _run("script", collector.base_url, "send_events.py", "150")
    stats = collector.wait_for(unique_events=300, timeout=10)
    assert (stats["unique_events"], stats["duplicates"]) == (300, 0)


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("flush_interval", ["0.05", "60"], ids=["while-running", "at-exit"])
def test_pool_workers_deliver_every_event(
    collector: CollectorHandle, method: str, flush_interval: str
) -> None:
    out = _run(
        "multiprocessing",
        collector.base_url,
        "pool_example.py",
        method,
        "40",
        XPEVENTS_FLUSH_INTERVAL=flush_interval,
    )
    stats = collector.wait_for(unique_events=80, timeout=10)
    assert (stats["unique_events"], stats["duplicates"]) == (80, 0)
    events = collector.events(limit=1000)
    assert set(Counter(e["visitor_id"] for e in events).values()) == {2}
    workers = {str(e["tags"]["worker_pid"]) for e in events if e["tags"]}
    assert workers == set(out.split())  # every worker that ran a task sent its events


def test_pool_client_without_the_initializer_says_how_to_fix_it() -> None:
    with pytest.raises(ConfigError, match=r"initializer=xpevents\.integrations\.pool\.initializer"):
        pool.client()
    pool.initializer({"datafile": "{}", "batch_size": 3})  # never raises: logged
    with pytest.raises(ConfigError, match="unknown option 'batch_size'"):
        pool.client()


def test_a_bad_option_fails_the_task_not_the_pool() -> None:
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1, pool.initializer, ({"datafil": "x"},)) as p:
        with pytest.raises(
            ConfigError, match="unknown option 'datafil'; did you mean 'datafile'\\?"
        ):
            p.apply(pool.client)
        p.close()
        p.join()
