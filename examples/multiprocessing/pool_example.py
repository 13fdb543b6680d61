"""A multiprocessing pool whose workers each send through their own xpevents client.

Run:  XPEVENTS_ENDPOINT=http://127.0.0.1:8788 python pool_example.py spawn 100
"""

import os
import sys
from multiprocessing import get_context

from xpevents.example import example_datafile
from xpevents.integrations import pool


def checkout(user: str) -> int:
    pool.client().activate("checkout_button_color", user)
    pool.client().track("purchase", user, event_tags={"revenue": 4200, "worker_pid": os.getpid()})
    return os.getpid()


def main(method: str, tasks: int) -> None:
    options = {
        "datafile": example_datafile(),
        "dispatcher": {"flush_interval": float(os.environ.get("XPEVENTS_FLUSH_INTERVAL", "1.0"))},
    }
    with get_context(method).Pool(2, pool.initializer, (options,)) as workers:
        pids = workers.map(checkout, [f"{method}-user-{i}" for i in range(tasks)], chunksize=1)
        workers.close()  # the workers end normally, each flushing its client
        workers.join()
    print(" ".join(sorted({str(pid) for pid in pids})))  # the workers that ran tasks


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
