"""The smallest Django project that sends events through xpevents."""

import os

from xpevents.example import example_datafile

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "shop.urls"
INSTALLED_APPS = ["xpevents.integrations.django"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

XPEVENTS = {
    # your project's datafile; the example one when XPEVENTS_DATAFILE is not set
    **(
        {"DATAFILE_PATH": os.environ["XPEVENTS_DATAFILE"]}
        if os.environ.get("XPEVENTS_DATAFILE")
        else {"DATAFILE": example_datafile()}
    ),
    # the endpoint comes from XPEVENTS_ENDPOINT here; "ENDPOINT": "http://..." also works
    "DISPATCHER": {"flush_interval": float(os.environ.get("XPEVENTS_FLUSH_INTERVAL", "1.0"))},
    "FLUSH_TIMEOUT": 5.0,
}
