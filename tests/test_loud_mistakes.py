"""Mistakes are loud, like the official SDK: unknown keys at ERROR, float revenue, paths."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from xpevents import Client, DatafileError, InvalidInputError, UnknownKeyError
from xpevents.example import example_datafile
from xpevents.testing import RecordingDispatcher


@pytest.fixture
def client() -> Client:
    return Client(example_datafile(), event_dispatcher=RecordingDispatcher())


def test_unknown_keys_are_errors_at_the_default_warning_level(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        client.activate("checkout_buton_color", "u1")
        client.track("purchse", "u1")
        client.is_feature_enabled("new_chekout", "u1")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any('"checkout_buton_color" is not in the datafile' in m for m in errors)
    assert any('"purchse" is not in the datafile' in m for m in errors)
    assert any('"new_chekout" is not in the datafile' in m for m in errors)
    strict = Client(example_datafile(), event_dispatcher=RecordingDispatcher(), strict=True)
    with pytest.raises(UnknownKeyError):
        strict.track("purchse", "u1")


def test_a_float_revenue_is_said_and_refused_in_strict_mode(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = client.event_dispatcher
    assert isinstance(recorder, RecordingDispatcher)
    with caplog.at_level(logging.WARNING):
        client.track("purchase", "u1", event_tags={"revenue": 12.99})
    assert any(
        "revenue must be an integer number of cents" in r.getMessage() for r in caplog.records
    )
    (conversion,) = recorder.conversions()
    assert conversion.revenue is None and conversion.tags == {"revenue": 12.99}
    strict = Client(example_datafile(), event_dispatcher=RecordingDispatcher(), strict=True)
    with pytest.raises(InvalidInputError, match=r"1299 for \$12\.99"):
        strict.track("purchase", "u1", event_tags={"revenue": 12.99})
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        client.track("purchase", "u1", event_tags={"revenue": 1299})
    assert not caplog.records


def test_a_path_is_read_and_a_path_string_is_named(tmp_path: Path) -> None:
    path = tmp_path / "datafile.json"
    path.write_text(example_datafile())
    with Client(path, event_dispatcher=RecordingDispatcher()) as client:
        assert client.is_valid
    with pytest.raises(DatafileError, match="this looks like a file path"):
        Client(str(path), event_dispatcher=RecordingDispatcher())
    with pytest.raises(DatafileError, match="this looks like a file path"):
        Client("datafile.json", event_dispatcher=RecordingDispatcher())
    with pytest.raises(Exception, match="cannot read it"):
        Client(tmp_path / "missing.json", event_dispatcher=RecordingDispatcher())


def test_waiting_for_a_first_datafile_logs_no_datafile_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from xpevents.config.polling import PollingConfigManager

    manager = PollingConfigManager(
        url="http://127.0.0.1:9/datafiles/K.json", update_interval=60, blocking_timeout=0.05
    )
    with caplog.at_level(logging.WARNING, logger="xpevents.datafile"):
        client = Client(config_manager=manager, event_dispatcher=RecordingDispatcher())
        assert not client.is_valid
        client.close()
    assert not [r for r in caplog.records if r.name == "xpevents.datafile"]


@pytest.mark.parametrize(
    "attributes",
    [
        {"country": "US", "age": "30"},
        {"country": ["US"], "age": 30},
        {"country": "US", "age": 1e300},
    ],
)
def test_an_attribute_of_the_wrong_type_gets_the_official_warning(
    caplog: pytest.LogCaptureFixture, attributes: dict[str, object]
) -> None:
    from optimizely import optimizely

    ours = Client(example_datafile(), event_dispatcher=RecordingDispatcher())
    theirs = optimizely.Optimizely(
        example_datafile(),
        event_dispatcher=RecordingDispatcher(),
        logger=logging.getLogger("official"),
    )
    with caplog.at_level(logging.WARNING):
        ours.activate("free_shipping_banner", "u7", attributes)
        theirs.activate("free_shipping_banner", "u7", attributes)
    theirs.close()

    def warnings(logger: str) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name.startswith(logger) and "evaluated to UNKNOWN" in r.getMessage()
        ]

    assert warnings("xpevents") and warnings("xpevents") == warnings("official")


def test_the_official_error_handler_and_logger_work_unchanged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from optimizely.error_handler import NoOpErrorHandler, RaiseExceptionErrorHandler
    from optimizely.logger import SimpleLogger

    official_logger = SimpleLogger(min_level=logging.DEBUG)
    seen: list[Exception] = []

    class Collecting:
        def handle_error(self, error: Exception) -> None:
            seen.append(error)

    client = Client(
        example_datafile(),
        event_dispatcher=RecordingDispatcher(),
        logger=official_logger,
        error_handler=Collecting(),
    )
    client.track("purchse", "u1")
    client.activate("checkout_button_color", 42)  # type: ignore[arg-type]
    assert [type(e) for e in seen] == [UnknownKeyError, InvalidInputError]
    raising = Client(
        example_datafile(),
        event_dispatcher=RecordingDispatcher(),
        error_handler=RaiseExceptionErrorHandler(),
    )
    with pytest.raises(UnknownKeyError):
        raising.track("purchse", "u1")
    Client(
        example_datafile(), event_dispatcher=RecordingDispatcher(), error_handler=NoOpErrorHandler()
    )
    with pytest.raises(Exception, match="handle_error\\(error\\)"):
        Client(example_datafile(), event_dispatcher=RecordingDispatcher(), error_handler=object())
    with pytest.raises(Exception, match=r"logging\.Logger"):
        Client(example_datafile(), event_dispatcher=RecordingDispatcher(), logger=object())


def test_an_endpoint_passed_as_the_dispatcher_suggests_event_endpoint() -> None:
    from xpevents import ConfigError

    url = "http://127.0.0.1:8788/v1/events"
    with pytest.raises(ConfigError) as caught:
        Client(example_datafile(), url)  # type: ignore[arg-type]
    message = str(caught.value)
    assert f"did you mean event_endpoint={url!r}?" in message
    assert "has no dispatch_event(event) method" in message
    with pytest.raises(ConfigError) as caught:
        Client(example_datafile(), 42)  # type: ignore[arg-type]
    assert "did you mean" not in str(caught.value)  # only a URL-like string gets the hint
