"""The public surface, pinned: adding or removing a public name is a deliberate change.

``xpevents`` exports exactly its public names (nothing public is left out of
``__all__``); the other user-facing modules export exactly the names listed here; every
exported name resolves; and the import paths users rely on keep working.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

import xpevents

TOP_LEVEL = [
    "BACKGROUND_RETRY",
    "EVENTS_URL",
    "EVENTS_URL_EU",
    "SYNC_RETRY",
    "AsyncDispatcher",
    "BatchDispatcher",
    "Client",
    "ConfigError",
    "DatafileError",
    "Decision",
    "DefaultEventDispatcher",
    "DispatchError",
    "DispatchOutcome",
    "DispatchStats",
    "EventBuilder",
    "EventDispatcher",
    "EventLike",
    "InvalidInputError",
    "LogEvent",
    "NotificationCenter",
    "NotificationType",
    "OptimizelyDecideOption",
    "OptimizelyDecision",
    "OptimizelyDecisionContext",
    "OptimizelyForcedDecision",
    "OptimizelyUserContext",
    "PayloadError",
    "ProjectConfig",
    "RetryPolicy",
    "SpoolError",
    "UnknownKeyError",
    "XpeventsError",
    "__version__",
    "load_config",
]

MODULES = {
    "xpevents.client": ["Client"],
    "xpevents.decide": [
        "Decision",
        "InvalidInputError",
        "OptimizelyDecideOption",
        "OptimizelyDecision",
        "UnknownKeyError",
        "UserContextLike",
        "parse_decide_options",
    ],
    "xpevents.spool": [
        "DeadLetter",
        "MemorySpool",
        "RedisSpool",
        "Spool",
        "SpoolFront",
        "SpoolRecord",
        "SpoolStats",
        "SqliteSpool",
        "open_spool",
    ],
    "xpevents.testing": [
        "CollectorHandle",
        "RecordedConversion",
        "RecordedImpression",
        "RecordingDispatcher",
        "run_collector",
    ],
    "xpevents.example": ["example_datafile"],
    "xpevents.metrics": ["DispatcherMetrics", "register"],
    "xpevents.openfeature": ["XpeventsProvider"],
    "xpevents.integrations.starlette": ["get_client", "get_user", "install", "lifespan"],
    "xpevents.integrations.settings": ["Settings", "Wiring", "build"],
    "xpevents.integrations.flask": ["Xpevents", "current_client"],
    "xpevents.integrations.django": ["client", "wiring"],
    "xpevents.integrations.celery": ["client", "install"],
    "xpevents.integrations.serverless": ["flush_after", "flush_budget"],
    "xpevents.integrations.pool": ["client", "initializer"],
    "xpevents.relay.testing": ["RelayHandle", "run_relay"],
    "xpevents.official": ["use_fast_uuids"],
    "xpevents.errors": [
        "BodyRejected",
        "ConfigError",
        "DatafileError",
        "DispatchError",
        "InvalidInputError",
        "PayloadError",
        "PayloadSchemaError",
        "SpoolError",
        "SpoolFull",
        "UnknownKeyError",
        "XpeventsError",
    ],
    "xpevents.collector": [
        "ABORT_EXTENSION",
        "Collector",
        "CollectorServer",
        "CollectorStats",
        "DEFAULT_MAX_BODY",
        "DropCapableProtocol",
        "EventStore",
        "Fault",
        "FaultInjector",
        "FaultSettings",
    ],
    "xpevents.events": ["DEFAULT_HEADERS", "EVENTS_URL", "EVENTS_URL_EU", "LogEvent"],
}


def test_the_top_level_exports_exactly_its_public_names() -> None:
    public = {
        name
        for name, value in vars(xpevents).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(xpevents.__all__) == sorted(public | {"__version__"})
    assert sorted(xpevents.__all__) == sorted(TOP_LEVEL)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_user_facing_modules_export_what_is_pinned(module: str) -> None:
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(MODULES[module])
    for name in imported.__all__:
        assert getattr(imported, name) is not None, f"{module}.{name} does not resolve"


def test_every_exception_derives_from_the_root() -> None:
    errors = importlib.import_module("xpevents.errors")
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), xpevents.XpeventsError)


def test_entry_points_still_work() -> None:
    """The console script's module and the pytest plugin import as their entry points say."""
    cli = importlib.import_module("xpevents.cli")
    assert callable(cli.main)
    plugin = importlib.import_module("xpevents.pytest_plugin")
    for name in (
        "collector",
        "collector_factory",
        "xpevents_collector",
        "xpevents_collector_factory",
    ):
        assert hasattr(plugin, name)
    result = subprocess.run(
        [sys.executable, "-m", "xpevents", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for command in ("collector", "relay", "demo", "spool"):
        assert command in result.stdout


def test_importing_xpevents_stays_light() -> None:
    """The client does not drag in the services, redis-py, or httpx's command-line
    client (click, rich, pygments: 5.7 MB of RSS; xpevents._internal.httpx_cli)."""
    code = (
        "import sys, xpevents; "
        "print(sorted(m for m in ('redis', 'starlette', 'uvicorn', 'click', 'rich', "
        "'pygments') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_httpx_command_line_client_still_runs_after_importing_xpevents() -> None:
    """The deferred ``httpx._main`` loads on the first ``httpx.main()`` call."""
    code = "import xpevents, httpx, sys; sys.argv = ['httpx', '--help']; httpx.main()"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: httpx" in result.stdout


def test_an_application_that_imported_httpx_first_keeps_its_cli_module() -> None:
    code = (
        "import httpx, sys; real = sys.modules['httpx._main']; import xpevents; "
        "print(sys.modules['httpx._main'] is real and httpx.main is real.main)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "True"
