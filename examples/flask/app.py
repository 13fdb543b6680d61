"""A Flask app whose requests decide and track through xpevents.

Run:  XPEVENTS_ENDPOINT=http://127.0.0.1:8788 gunicorn --preload -w 2 app:app
Then: curl 'http://127.0.0.1:8000/checkout?user=alice'
"""

import os

from flask import Flask, request

from xpevents.example import example_datafile
from xpevents.integrations.flask import Xpevents, current_client

app = Flask(__name__)
if os.environ.get("XPEVENTS_DATAFILE"):
    app.config["XPEVENTS_DATAFILE_PATH"] = os.environ["XPEVENTS_DATAFILE"]
else:
    app.config["XPEVENTS_DATAFILE"] = example_datafile()
app.config["XPEVENTS_DISPATCHER"] = {
    "flush_interval": float(os.environ.get("XPEVENTS_FLUSH_INTERVAL", "1.0"))
}
Xpevents(app)


@app.get("/checkout")
def checkout() -> dict[str, object]:
    user = request.args["user"]
    color = current_client.activate("checkout_button_color", user)
    current_client.track("purchase", user, event_tags={"revenue": 4200})
    return {"user": user, "button": color, "pid": os.getpid()}


@app.get("/health")
def health() -> str:
    return "ok"
