"""Celery tasks that decide and track through xpevents, one client per worker process.

Run:  XPEVENTS_ENDPOINT=http://127.0.0.1:8788 celery -A tasks worker -c 2
Then: python -c 'import tasks; tasks.checkout.delay("alice")'
"""

import os

from celery import Celery

from xpevents.example import example_datafile
from xpevents.integrations.celery import client, install

broker = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery("tasks", broker=broker, backend=broker)
app.conf.task_default_queue = os.environ.get("CELERY_QUEUE", "celery")

install(
    app,
    # your project's datafile; the example one when XPEVENTS_DATAFILE is not set
    datafile_path=os.environ.get("XPEVENTS_DATAFILE"),
    datafile=None if os.environ.get("XPEVENTS_DATAFILE") else example_datafile(),
    dispatcher={"flush_interval": float(os.environ.get("XPEVENTS_FLUSH_INTERVAL", "1.0"))},
    flush_timeout=5.0,
)


@app.task
def checkout(user: str) -> int:
    client().activate("checkout_button_color", user)
    client().track("purchase", user, event_tags={"revenue": 4200, "worker_pid": os.getpid()})
    return os.getpid()
