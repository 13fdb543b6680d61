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


def _datafile_source() -> dict[str, object]:
    """Where the datafile comes from: an SDK key (fetched and polled), a file, or the example."""
    sdk_key = os.environ.get("XPEVENTS_SDK_KEY")
    if sdk_key and os.environ.get("XPEVENTS_DATAFILE_URL_TEMPLATE"):  # your own datafile server
        from xpevents.config import PollingConfigManager

        manager = PollingConfigManager(
            sdk_key,
            url_template=os.environ["XPEVENTS_DATAFILE_URL_TEMPLATE"],
            update_interval=float(os.environ.get("XPEVENTS_UPDATE_INTERVAL", "300")),
        )
        return {"CLIENT": {"config_manager": manager}}
    if sdk_key:
        return {"SDK_KEY": sdk_key}  # https://cdn.optimizely.com/datafiles/<key>.json
    if os.environ.get("XPEVENTS_DATAFILE"):
        return {"DATAFILE_PATH": os.environ["XPEVENTS_DATAFILE"]}
    return {"DATAFILE": example_datafile()}


XPEVENTS = {
    **_datafile_source(),
    # the endpoint comes from XPEVENTS_ENDPOINT here; "ENDPOINT": "http://..." also works
    "DISPATCHER": {"flush_interval": float(os.environ.get("XPEVENTS_FLUSH_INTERVAL", "1.0"))},
    "FLUSH_TIMEOUT": 5.0,
}
