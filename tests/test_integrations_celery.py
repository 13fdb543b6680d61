"""examples/celery: a real prefork worker (concurrency 2) on the Redis broker at 127.0.0.1."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections import Counter

import pytest
import redis
from celery import Celery

from xpevents import ConfigError
from xpevents.integrations import celery as integration
from xpevents.testing import CollectorHandle

from apps import BIN, EXAMPLES, example_env

FOLDER = EXAMPLES / "celery"
BROKER = "redis://127.0.0.1:6379/13"  # a database no other test uses


def _redis_or_skip() -> None:
    try:
        redis.Redis.from_url(BROKER, socket_timeout=2).ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")


@pytest.mark.parametrize("flush_interval", ["0.05", "60"], ids=["while-running", "at-shutdown"])
def test_a_prefork_worker_delivers_every_tasks_events(
    collector: CollectorHandle, flush_interval: str
) -> None:
    _redis_or_skip()
    queue = f"xpevents-test-{uuid.uuid4().hex[:8]}"
    env = example_env(
        FOLDER,
        collector.base_url,
        CELERY_BROKER_URL=BROKER,
        CELERY_QUEUE=queue,
        XPEVENTS_FLUSH_INTERVAL=flush_interval,
    )
    command = [str(BIN / "celery"), "-A", "tasks", "worker", "--pool", "prefork"]
    command += ["--concurrency", "2", "-Q", queue, "--without-gossip", "--without-mingle"]
    command += ["--without-heartbeat", "--prefetch-multiplier", "1", "-l", "warning"]
    worker = subprocess.Popen(
        command, cwd=FOLDER, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    producer = Celery(broker=BROKER, backend=BROKER)
    users = [f"task-user-{i}" for i in range(40)]
    try:
        results = [producer.send_task("tasks.checkout", [u], queue=queue) for u in users]
        pids = Counter(r.get(timeout=60) for r in results)
        worker.send_signal(signal.SIGTERM)  # warm shutdown: children exit, then the worker
        stderr = worker.communicate(timeout=60)[1]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=10)
        producer.close()
    assert worker.returncode == 0, stderr
    stats = collector.wait_for(unique_events=80, timeout=20)
    assert stats["unique_events"] == 80
    assert stats["duplicates"] == 0
    events = collector.events(limit=1000)
    assert Counter(e["visitor_id"] for e in events) == dict.fromkeys(users, 2)
    tagged = {e["tags"]["worker_pid"] for e in events if e["tags"]}
    assert tagged == set(pids)
    assert len(pids) == 2, pids  # both prefork children ran tasks, each with its own client


def test_install_checks_the_options_and_client_needs_install() -> None:
    integration._settings.clear()
    with pytest.raises(ConfigError, match="call install"):
        integration.client()
    app = Celery(broker="memory://")
    with pytest.raises(ConfigError, match=r"app\.conf"):
        integration.install(app)
    with pytest.raises(ConfigError, match="exactly one of 'datafile'"):
        integration.install(app, endpoint="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="unknown option"):
        integration.install(app, datafile="{}", flush="soon")
    with pytest.raises(ConfigError, match="Celery application"):
        integration.install(object(), datafile="{}")
