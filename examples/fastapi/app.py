"""A FastAPI app whose requests decide and track through xpevents.

Run:  XPEVENTS_ENDPOINT=http://127.0.0.1:8788 uvicorn app:app --port 8000
Then: curl -H 'x-user-id: alice' http://127.0.0.1:8000/checkout
"""

import os
from typing import Annotated

from fastapi import Depends, FastAPI

from xpevents import Client, OptimizelyUserContext
from xpevents.example import example_datafile
from xpevents.integrations.starlette import get_client, get_user, install

app = FastAPI()
install(
    app,
    # your project's datafile; the example one when XPEVENTS_DATAFILE is not set
    datafile_path=os.environ.get("XPEVENTS_DATAFILE"),
    datafile=None if os.environ.get("XPEVENTS_DATAFILE") else example_datafile(),
    # the user of each request, with attributes for audiences
    user=lambda request: (request.headers.get("x-user-id"), {"plan": "free"}),
    flush_interval=float(os.environ.get("XPEVENTS_FLUSH_INTERVAL", "1.0")),
)


@app.get("/checkout")
def checkout(
    client: Annotated[Client, Depends(get_client)],
    user: Annotated[OptimizelyUserContext, Depends(get_user)],
) -> dict[str, str | None]:
    color = client.activate("checkout_button_color", user.user_id)
    user.track_event("purchase", {"revenue": 4200})
    return {"user": user.user_id, "button": color}


@app.get("/health")
def health() -> str:
    return "ok"
