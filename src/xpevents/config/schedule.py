"""When to poll next: the interval with jitter, and backoff after a failure.

* After a success: ``update_interval`` times a random factor in [0.9, 1.1], so a fleet
  of processes started together does not poll the CDN in lock step.
* After a transient failure (5xx, 429, timeout, network, an invalid datafile): full
  jitter below ``min(update_interval, backoff_base * 2 ** (failures - 1))``, at least
  ``min_wait``: a process with no datafile recovers within seconds of the CDN coming
  back, and one with a datafile never polls faster than it would have anyway... except
  in the first minutes of an outage, when trying sooner is worth it.
* After a permanent failure (401, 403, 404): the whole interval; retrying sooner cannot
  help and would only load the CDN.
"""

from __future__ import annotations

import random
from typing import Final

__all__ = ["MIN_WAIT", "next_delay"]

MIN_WAIT: Final = 0.05
"""The shortest wait between two polls, in seconds."""


def next_delay(
    interval: float,
    *,
    failures: int,
    permanent: bool,
    backoff_base: float,
    rng: random.Random,
) -> float:
    """Seconds until the next poll after ``failures`` consecutive failures (0: a success)."""
    if failures == 0 or permanent:
        return interval * rng.uniform(0.9, 1.1)
    ceiling = min(interval, backoff_base * 2.0 ** min(failures - 1, 30))
    return max(MIN_WAIT, rng.uniform(ceiling / 2, ceiling))
