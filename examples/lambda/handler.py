"""An AWS-Lambda-style handler that flushes its events before every return.

Deploy ``handler.handler``; locally, ``runtime.py`` plays the Lambda runtime.
"""

import os

from xpevents import BatchDispatcher, Client
from xpevents.example import example_datafile
from xpevents.integrations.serverless import flush_after

# created once per container, reused by every invocation; the endpoint comes from
# XPEVENTS_ENDPOINT; a long interval: no timer wake-ups, flush_after sends
dispatcher = BatchDispatcher(flush_interval=60)
client = Client(example_datafile(), event_dispatcher=dispatcher)


@flush_after(dispatcher, timeout=2.0)
def handler(event: dict[str, str], context: object) -> dict[str, object]:
    client.activate("checkout_button_color", event["user_id"])
    client.track("purchase", event["user_id"], event_tags={"revenue": 4200})
    return {"ok": True, "pid": os.getpid()}
