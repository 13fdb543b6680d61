"""A plain script: no close(), no flush(); the dispatcher's atexit hook sends everything.

Run:  XPEVENTS_ENDPOINT=http://127.0.0.1:8788 python send_events.py 100
"""

import sys

from xpevents import Client
from xpevents.example import example_datafile

client = Client(example_datafile())  # owns a BatchDispatcher: flushed at exit (5 s)

for i in range(int(sys.argv[1])):
    user = f"script-user-{i}"
    client.activate("checkout_button_color", user)
    client.track("purchase", user, event_tags={"revenue": 4200})
print("queued; the atexit hook delivers them")
