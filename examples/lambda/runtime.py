"""A stand-in for the Lambda runtime: one invocation per stdin line, one answer per line.

Each line is ``{"event": {...}, "remaining_ms": 3000}``; the answer is the handler's
result plus what its flush did (``pending``: visitors still unsent). Between
invocations the caller may freeze this process (SIGSTOP) as Lambda does.
"""

import json
import sys
import time

from handler import handler


class Context:
    def __init__(self, remaining_ms: float) -> None:
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


for line in sys.stdin:
    invocation = json.loads(line)
    result = handler(invocation["event"], Context(invocation["remaining_ms"]))
    outcome = handler.last_outcome
    answer = {**result, "pending": None if outcome is None else outcome.pending}
    print(json.dumps(answer), flush=True)
