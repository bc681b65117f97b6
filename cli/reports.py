"""`mpaas analytics report|funnel|retention|dau|saved ...`: reports over the admin API.

Every command prints a table by default, the API's whole answer with ``--json``, and
the table's rows as CSV with ``--csv``. The server checks the parameters; a bad one is
one line on stderr and exit code 1.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import click

from mpaas.cli.client import ApiClient
from mpaas.cli.errors import CliError
from mpaas.cli.output import emit, emit_json, emit_table
from mpaas.cli.report_tables import flatten, for_table

REPORTS = "/api/v1/analytics/reports"
SAVED = "/api/v1/analytics/saved-reports"
KINDS = ("events", "active-users", "new-returning", "stickiness", "retention", "funnel", "paths", "adoption",
         "push", "startup", "stability", "h5", "network")  # fmt: skip
Command = Callable[..., Any]


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{option} {item!r}: use name=value", exit_code=2)
        out[key] = value
    return out


def range_options(fn: Command) -> Command:
    """--from/--to/--last-days/--tz, as every report and saved run takes them."""
    for decorator in reversed(
        [
            click.option(
                "--from", "start", help="First local day (YYYY-MM-DD) or an instant with an offset."
            ),
            click.option("--to", "end", help="Last local day (included) or an instant (excluded)."),
            click.option(
                "--last-days", type=click.IntRange(1, 400), help="The last N local days, up to now."
            ),
            click.option("--tz", help="Time zone of the day boundaries (default Asia/Shanghai)."),
        ]
    ):
        fn = decorator(fn)
    return fn


def report_options(fn: Command) -> Command:
    """The app, the range, filters, breakdown and the output format."""
    decorators: list[Callable[[Command], Command]] = [
        click.option("--app", required=True, help="App name."),
        range_options,
        click.option("--breakdown", help="Split by a column or properties.<name> (events, funnel)."),
        click.option(
            "--filter",
            "filters",
            multiple=True,
            help="Only events where field=value (also != > < ~ for contains); repeatable.",
        ),
        output_options,
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def output_options(fn: Command) -> Command:
    fn = click.option("--csv", "as_csv", is_flag=True, help="Print the rows as CSV.")(fn)
    return click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer.")(fn)


def _common(
    app: str, start: str | None, end: str | None, last_days: int | None, tz: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"app": app, "from": start, "to": end, "last_days": last_days, "tz": tz}
    return {k: v for k, v in out.items() if v is not None}


def _show(kind: str, answer: dict[str, Any], as_json: bool, as_csv: bool) -> None:
    if as_json and as_csv:
        raise CliError("choose one of --json and --csv", exit_code=2)
    if as_json:
        emit_json(answer)
        return
    rows, columns = flatten(kind, answer["result"])
    if as_csv:
        writer = csv.DictWriter(sys.stdout, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows([{k: "" if v is None else v for k, v in row.items()} for row in rows])
        return
    q = answer["query"]
    click.echo(f"{q['kind']} · {q['app']} · {q['from']} → {q['to']} ({q['tz']})", err=True)
    emit_table(for_table(rows), columns)


def _run(kind: str, params: dict[str, Any], as_json: bool, as_csv: bool) -> None:
    body = {k: v for k, v in params.items() if v not in (None, (), [])}
    answer = ApiClient().call("POST", f"{REPORTS}/{kind}", json_body=body)
    _show(kind, answer, as_json, as_csv)


def _typed(value: str) -> Any:
    """A --param value: JSON when it parses (numbers, lists, objects), else the string."""
    try:
        return json.loads(value)
    except ValueError:
        return value


@click.command("report")
@click.argument("kind", type=click.Choice(KINDS))
@report_options
@click.option("--param", "params", multiple=True, help="A parameter of the kind: name=value (JSON or text).")
def report_cmd(
    kind: str,
    app: str,
    start: str | None,
    end: str | None,
    last_days: int | None,
    tz: str | None,
    breakdown: str | None,
    filters: tuple[str, ...],
    as_json: bool,
    as_csv: bool,
    params: tuple[str, ...],
) -> None:
    """Run any report: events, active-users, retention, funnel, paths, adoption, push, startup, ...

    \b
    mpaas analytics report adoption --app superapp --param package_id=transfer --last-days 14
    mpaas analytics report funnel --app superapp --param steps=login.start,login.succeeded --csv
    """
    body = _common(app, start, end, last_days, tz) | {"breakdown": breakdown, "filter": list(filters)}
    body |= {k: _typed(v) for k, v in _pairs(params, "--param").items()}
    _run(kind, body, as_json, as_csv)


@click.command("funnel")
@report_options
@click.option("--steps", required=True, help="Event names in order, separated by commas.")
@click.option(
    "--window-days", type=click.IntRange(1, 366), help="Conversion window from the first step (14)."
)
def funnel_cmd(
    app: str,
    start: str | None,
    end: str | None,
    last_days: int | None,
    tz: str | None,
    breakdown: str | None,
    filters: tuple[str, ...],
    as_json: bool,
    as_csv: bool,
    steps: str,
    window_days: int | None,
) -> None:
    """A funnel: persons reaching each step in order within the window, drop-off, median times."""
    body = _common(app, start, end, last_days, tz) | {"breakdown": breakdown, "filter": list(filters)}
    body |= {"steps": [s.strip() for s in steps.split(",")], "window_days": window_days}
    _run("funnel", body, as_json, as_csv)


@click.command("retention")
@click.option("--app", required=True, help="App name.")
@range_options
@click.option("--filter", "filters", multiple=True, help="Only events where field=value; repeatable.")
@click.option("--periods", type=click.IntRange(1, 400), help="Days after the cohort day to measure (8).")
@click.option(
    "--mode", type=click.Choice(["classic", "on_or_after"]), help="Day n exactly, or day n or later."
)
@click.option("--cohort-event", help="Cohorts by the first time of this event, not of any event.")
@click.option("--return-event", help="Count only this event as coming back.")
@output_options
def retention_cmd(
    app: str,
    start: str | None,
    end: str | None,
    last_days: int | None,
    tz: str | None,
    filters: tuple[str, ...],
    periods: int | None,
    mode: str | None,
    cohort_event: str | None,
    return_event: str | None,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Day-N retention by first-event cohort (a row per cohort day, a column per day n)."""
    body = _common(app, start, end, last_days, tz) | {
        "filter": list(filters),
        "periods": periods,
        "mode": mode,
    }
    body |= {"cohort_event": cohort_event, "return_event": return_event}
    _run("retention", body, as_json, as_csv)


@click.command("dau")
@click.option("--app", required=True, help="App name.")
@range_options
@click.option("--filter", "filters", multiple=True, help="Only events where field=value; repeatable.")
@output_options
def dau_cmd(
    app: str,
    start: str | None,
    end: str | None,
    last_days: int | None,
    tz: str | None,
    filters: tuple[str, ...],
    as_json: bool,
    as_csv: bool,
) -> None:
    """DAU, WAU, MAU and stickiness (DAU/MAU) per local day."""
    _run("active-users", _common(app, start, end, last_days, tz) | {"filter": list(filters)}, as_json, as_csv)


@click.group("saved")
def saved_group() -> None:
    """Saved reports: a name, a kind and its parameters, shared by the CLI and the web pages."""


SAVED_COLUMNS = ["name", "kind", "description", "updated_at", "updated_by"]


@saved_group.command("list")
@click.option("--app", required=True, help="App name.")
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def saved_list(app: str, kind: str | None, limit: int, offset: int, as_json: bool) -> None:
    """List an app's saved reports (a page at a time)."""
    params = {"app": app, "kind": kind, "limit": limit, "offset": offset}
    emit(ApiClient().call("GET", SAVED, params=params), as_json, SAVED_COLUMNS)


def _item(app: str, name: str) -> str:
    return f"{SAVED}/{quote(app, safe='')}/{quote(name, safe='')}"


@saved_group.command("show")
@click.argument("name")
@click.option("--app", required=True, help="App name.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def saved_show(name: str, app: str, as_json: bool) -> None:
    """Show a saved report's kind and parameters."""
    out = ApiClient().call("GET", _item(app, name))
    emit(out if as_json else out | {"params": json.dumps(out["params"], ensure_ascii=False)}, as_json)


@saved_group.command("save")
@click.argument("name")
@click.option("--app", required=True, help="App name.")
@click.option("--kind", required=True, type=click.Choice(KINDS), help="The report kind.")
@click.option("--param", "params", multiple=True, help="name=value (JSON or text); repeatable.")
@click.option("--params-json", help="All parameters as one JSON object (merged under --param).")
@click.option("--description", default="", help="What the report is for.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def saved_save(
    name: str,
    app: str,
    kind: str,
    params: tuple[str, ...],
    params_json: str | None,
    description: str,
    as_json: bool,
) -> None:
    """Save (or replace) a report.

    \b
    mpaas analytics saved save weekly-dau --app A --kind active-users --param last_days=7
    """
    body: dict[str, Any] = {}
    if params_json:
        try:
            body = json.loads(params_json)
        except ValueError as exc:
            raise CliError(f"--params-json is not JSON: {exc}", exit_code=2) from None
        if not isinstance(body, dict):
            raise CliError("--params-json must be a JSON object", exit_code=2)
    body |= {k: _typed(v) for k, v in _pairs(params, "--param").items()}
    payload = {"app": app, "name": name, "kind": kind, "params": body, "description": description}
    out = ApiClient().call("POST", SAVED, json_body=payload)
    emit(out if as_json else out | {"params": json.dumps(out["params"], ensure_ascii=False)}, as_json)


@saved_group.command("run")
@click.argument("name")
@click.option("--app", required=True, help="App name.")
@range_options
@output_options
def saved_run(
    name: str,
    app: str,
    start: str | None,
    end: str | None,
    last_days: int | None,
    tz: str | None,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Run a saved report; --from/--to/--last-days/--tz override its own."""
    body = {k: v for k, v in _common(app, start, end, last_days, tz).items() if k != "app"}
    answer = ApiClient().call("POST", _item(app, name) + "/run", json_body=body)
    _show(answer["query"]["kind"], answer, as_json, as_csv)


@saved_group.command("delete")
@click.argument("name")
@click.option("--app", required=True, help="App name.")
def saved_delete(name: str, app: str) -> None:
    """Delete a saved report."""
    ApiClient().call("DELETE", _item(app, name))
    click.echo(f"deleted saved report {name}", err=True)


def register(group: click.Group) -> None:
    """Add the report commands to `mpaas analytics`."""
    for command in (report_cmd, funnel_cmd, retention_cmd, dau_cmd, saved_group):
        group.add_command(command)
