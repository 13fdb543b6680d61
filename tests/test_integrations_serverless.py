"""examples/lambda: invocations with a freeze (SIGSTOP ... SIGCONT) between them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from xpevents import BatchDispatcher, ConfigError
from xpevents.integrations.serverless import flush_after, flush_budget
from xpevents.testing import CollectorHandle

from apps import EXAMPLES, example_env

FOLDER = EXAMPLES / "lambda"


class Runtime:
    def __init__(self, endpoint: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "runtime.py"],
            cwd=FOLDER,
            env=example_env(FOLDER, endpoint),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def invoke(self, user: str, remaining_ms: int = 3000) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        line = {"event": {"user_id": user}, "remaining_ms": remaining_ms}
        self.process.stdin.write(json.dumps(line) + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def end(self) -> str:
        assert self.process.stdin is not None and self.process.stderr is not None
        self.process.stdin.close()  # the runtime's loop ends; the process exits
        self.process.wait(30)
        return self.process.stderr.read()


def test_every_invocations_events_arrive_before_the_freeze(collector: CollectorHandle) -> None:
    runtime = Runtime(collector.base_url)
    try:
        for i in range(8):
            answer = runtime.invoke(f"lambda-user-{i}")
            runtime.freeze()  # no thread runs now: only what the flush sent is there
            try:
                assert answer["pending"] == 0
                assert collector.stats()["unique_events"] == 2 * (i + 1)
                time.sleep(0.2)
            finally:
                runtime.thaw()
        stderr = runtime.end()
    finally:
        if runtime.process.poll() is None:
            runtime.process.kill()
    assert runtime.process.returncode == 0, stderr
    stats = collector.stats()
    assert (stats["unique_events"], stats["duplicates"]) == (16, 0)


def test_a_deadline_cut_flush_is_sent_with_the_next_invocation(collector: CollectorHandle) -> None:
    runtime = Runtime(collector.base_url)
    try:
        collector.control(latency_ms=1500)
        # 300 ms left - 100 ms reserve: the flush may take 0.2 s; the collector takes 1.5 s
        first = runtime.invoke("late-user", remaining_ms=300)
        assert first["pending"] == 2
        runtime.freeze()
        time.sleep(0.2)
        collector.control(latency_ms=0)
        runtime.thaw()
        users = 1
        while runtime.invoke(f"next-user-{users}")["pending"]:  # each flush takes up to 2 s
            users += 1
            assert users < 5, "the late request never settled"
        runtime.end()
    finally:
        if runtime.process.poll() is None:
            runtime.process.kill()
    stats = collector.wait_for(unique_events=2 + 2 * users, timeout=20)
    assert (stats["unique_events"], stats["duplicates"]) == (2 + 2 * users, 0)


class Lambda:
    def __init__(self, ms: float) -> None:
        self.ms = ms

    def get_remaining_time_in_millis(self) -> float:
        return self.ms


def test_the_flush_budget_is_the_timeout_capped_by_the_remaining_time() -> None:
    assert flush_budget(None, 2.0, 0.1) == 2.0
    assert flush_budget(Lambda(10_000), 2.0, 0.1) == 2.0
    assert flush_budget(Lambda(1_000), 2.0, 0.1) == pytest.approx(0.9)
    assert flush_budget(Lambda(50), 2.0, 0.1) == 0.0


def test_the_flush_runs_when_the_handler_raises_and_never_raises_itself() -> None:
    dispatcher = BatchDispatcher(endpoint="http://127.0.0.1:9", atexit_timeout=None)

    @flush_after(dispatcher, timeout=0.5)
    def handler(event: dict[str, str], context: object) -> None:
        raise KeyError("user_id")

    with pytest.raises(KeyError):
        handler({}, None)
    assert handler.last_outcome is not None  # type: ignore[attr-defined]
    dispatcher.close(0.1)


def test_flush_after_validates_what_it_is_given() -> None:
    with pytest.raises(ConfigError, match="flush\\(timeout\\)"):
        flush_after(object())
    dispatcher = BatchDispatcher(endpoint="http://127.0.0.1:9", atexit_timeout=None)
    with pytest.raises(ConfigError, match="timeout=0"):
        flush_after(dispatcher, timeout=0)
    with pytest.raises(ConfigError, match="reserve=-1"):
        flush_after(dispatcher, reserve=-1)
    dispatcher.close(0.1)
