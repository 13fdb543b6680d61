"""``xpevents datafile example|show|lint`` and ``xpevents decide``."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import click
from rich.console import Console

from xpevents.decide import OptimizelyDecideOption
from xpevents.decide.datafile import ProjectConfig, load_config
from xpevents.errors import XpeventsError
from xpevents.example import example_datafile
from xpevents.inspect.explain import Step, explain_experiment, explain_flag
from xpevents.inspect.lint import lint
from xpevents.inspect.source import read_datafile
from xpevents.inspect.tables import datafile_tables, findings_table, overview, steps_table

__all__ = ["datafile_command", "decide_command"]

F = TypeVar("F", bound=Callable[..., Any])


def _source_options(command: F) -> F:
    """The datafile source options; the command receives the datafile text as ``text``."""

    @functools.wraps(command)
    def with_text(
        source: str | None,
        sdk_key: str | None,
        url_template: str | None,
        access_token: str | None,
        **kwargs: Any,
    ) -> Any:
        with _cli_errors():
            text = read_datafile(
                source, sdk_key=sdk_key, url_template=url_template, access_token=access_token
            )
        return command(text=text, **kwargs)

    options = [
        click.argument("source", required=False, metavar="[FILE|-|example]"),
        click.option("--sdk-key", help="Fetch the datafile of this SDK key instead of a FILE."),
        click.option(
            "--url-template",
            help="Where to fetch --sdk-key from, with {sdk_key}. "
            "[default: https://cdn.optimizely.com/datafiles/{sdk_key}.json]",
        ),
        click.option("--access-token", help="Token of an authenticated datafile (--sdk-key)."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables."),
    ]
    wrapped: Any = with_text
    for option in reversed(options):
        wrapped = option(wrapped)
    return cast(F, wrapped)


@contextmanager
def _cli_errors() -> Iterator[None]:
    try:
        yield
    except XpeventsError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("datafile", short_help="Print, show or lint a datafile.")
def datafile_command() -> None:
    """Print the example datafile, show a datafile as tables, or lint it."""


@datafile_command.command("example", short_help="Print the example datafile.")
def example_command() -> None:
    """Print the example datafile shipped with xpevents (JSON), e.g. > datafile.json."""
    click.echo(example_datafile(), nl=False)


@datafile_command.command("show", short_help="Experiments, flags, audiences as tables.")
@_source_options
def show_command(text: str, as_json: bool) -> None:
    """Show a datafile's experiments, flags, audiences, attributes and events."""
    with _cli_errors():
        config = load_config(text)
    if as_json:
        click.echo(json.dumps(overview(config), indent=2))
        return
    console = Console()
    for table in datafile_tables(config):
        console.print(table)


@datafile_command.command("lint", short_help="Find problems that load but surprise.")
@_source_options
def lint_command(text: str, as_json: bool) -> None:
    """Report warnings, unused audiences and attributes, unreachable experiments and
    traffic past 10000. Exits 1 when a warning is found."""
    with _cli_errors():
        config = load_config(text)
    findings = lint(config)
    if as_json:
        click.echo(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        Console().print(findings_table(findings))
    if any(f.level == "warning" for f in findings):
        raise SystemExit(1)


def _parse_attribute(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"{text!r}: expected NAME=VALUE, e.g. age=30", param_hint="--attr")
    try:
        value = json.loads(raw)
    except ValueError:
        return name, raw
    if isinstance(value, dict | list):
        return name, raw
    return name, value


@click.command("decide", short_help="Decide flags for a user, and explain why.")
@_source_options
@click.argument("user_id", metavar="USER")
@click.argument("keys", nargs=-1, metavar="[FLAG|EXPERIMENT]...")
@click.option(
    "--attr",
    "attrs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A user attribute (repeatable). VALUE is read as JSON when it is a number, "
    "true/false or null (age=30), else as a string (country=US); quote to force a "
    "string: zip='\"02139\"'.",
)
@click.option("--explain", is_flag=True, help="Print every step of each decision.")
def decide_command(
    text: str,
    as_json: bool,
    user_id: str,
    keys: tuple[str, ...],
    attrs: tuple[str, ...],
    explain: bool,
) -> None:
    """Decide flags (or experiments) for USER, as the client would; nothing is sent.

    With no keys, every flag is decided. SOURCE is a datafile FILE, - (stdin) or
    example; or use --sdk-key.
    """
    attributes = dict(_parse_attribute(a) for a in attrs)
    with _cli_errors():
        results = _decide(text, user_id, keys, attributes, explain)
    if as_json:
        click.echo(json.dumps(results, indent=2, default=str))
        return
    console = Console()
    for result in results:
        console.print(_verdict(result))
        if explain:
            steps = [Step(**s) for s in result["steps"]]
            console.print(steps_table(f"why ({result['key']})", steps))


def _verdict(result: dict[str, Any]) -> str:
    if result["kind"] == "unknown":
        return f"[red]{result['key']}[/red]: not a flag or experiment key in this datafile"
    if result["kind"] == "experiment":
        return f"experiment [bold]{result['key']}[/bold]: variation {result['variation_key']}"
    state = "[green]enabled[/green]" if result["enabled"] else "[red]disabled[/red]"
    lines = [
        f"flag [bold]{result['key']}[/bold]: {state}, variation {result['variation_key']}, "
        f"rule {result['rule_key']}"
    ]
    if result["variables"]:
        lines.append(f"  variables: {result['variables']}")
    lines.extend(f"  reason: {r}" for r in result["reasons"])
    return "\n".join(lines)


def _decide(
    text: str, user_id: str, keys: tuple[str, ...], attributes: dict[str, Any], explain: bool
) -> list[dict[str, Any]]:
    from xpevents.client import Client
    from xpevents.recording import RecordingDispatcher

    options = [
        OptimizelyDecideOption.INCLUDE_REASONS,
        OptimizelyDecideOption.DISABLE_DECISION_EVENT,
    ]
    logging.getLogger("xpevents").addHandler(logging.NullHandler())
    with Client(text, event_dispatcher=RecordingDispatcher()) as client:
        config = client.config
        assert config is not None  # a datafile was given: the client has its config
        wanted = keys or tuple(config.flags)
        return [_one(client, config, key, user_id, attributes, options, explain) for key in wanted]


def _one(
    client: Any,
    config: ProjectConfig,
    key: str,
    user_id: str,
    attributes: dict[str, Any],
    options: list[OptimizelyDecideOption],
    explain: bool,
) -> dict[str, Any]:
    flag = config.flags.get(key)
    if flag is not None:
        decision = client.decide(user_id, key, attributes, options)
        steps = explain_flag(config, flag, user_id, attributes) if explain else []
        return {
            "kind": "flag",
            "key": key,
            "enabled": decision.enabled,
            "variation_key": decision.variation_key,
            "rule_key": decision.rule_key,
            "variables": dict(decision.variables),
            "reasons": list(decision.reasons),
            "steps": [s.as_dict() for s in steps],
        }
    experiment = config.experiments.get(key)
    if experiment is not None:
        variation = client.get_variation(key, user_id, attributes)
        steps = explain_experiment(config, experiment, user_id, attributes) if explain else []
        return {
            "kind": "experiment",
            "key": key,
            "variation_key": variation,
            "steps": [s.as_dict() for s in steps],
        }
    return {"kind": "unknown", "key": key, "steps": []}
