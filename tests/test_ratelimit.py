"""LogEvery: one line per key and interval, whichever thread asks."""

from __future__ import annotations

import threading

from xpevents._internal.ratelimit import LogEvery


def test_due_once_per_interval_and_key() -> None:
    every = LogEvery(10)
    assert every.due("a", now=100.0)
    assert not every.due("a", now=105.0)  # the lock-free answer
    assert every.due("b", now=105.0)  # another key has its own interval
    assert not every.due("a", now=109.9)
    assert every.due("a", now=110.0)


def test_tally_counts_what_due_skipped_only_for_its_own_calls() -> None:
    every = LogEvery(10)
    assert every.tally("k", 1, now=0.0) == 1
    assert every.tally("k", 2, now=1.0) is None
    assert every.tally("k", 3, now=2.0) is None
    assert every.tally("k", 1, now=10.0) == 6


def test_many_threads_get_one_line_per_interval() -> None:
    every = LogEvery(3600)
    answers: list[bool] = []
    lock = threading.Lock()

    def ask() -> None:
        mine = [every.due("x") for _ in range(2000)]
        with lock:
            answers.extend(mine)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 16000 and answers.count(True) == 1
