"""`mpaas events …`: the event catalogue (declared tracking points), through the admin API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from mpaas.cli.admin import paged
from mpaas.cli.client import ApiClient
from mpaas.cli.errors import CliError
from mpaas.cli.output import emit, emit_json, emit_record, emit_table, json_option

COLUMNS = ["name", "mode", "owner", "builtin", "description"]


@click.group("events")
def events_group() -> None:
    """Declare tracking points: name, description, properties schema, owner, mode."""


def _schema(value: str | None) -> dict[str, Any] | None:
    """A JSON Schema given inline or as @FILE."""
    if value is None:
        return None
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--schema is not valid JSON: {exc}", exit_code=2) from None
    if not isinstance(schema, dict):
        raise CliError("--schema must be a JSON object", exit_code=2)
    return schema


@events_group.command("define")
@click.argument("name")
@click.option("--app", required=True, help="App name.")
@click.option("--description", default="", help="What the event means and when it fires.")
@click.option("--schema", help="JSON Schema of the properties, inline or @file.json.")
@click.option("--owner", default="", help="Team or person answering for it.")
@click.option("--mode", type=click.Choice(["record", "warn", "reject"]), default="record", show_default=True)
@click.option("--allow-pii", "allow", multiple=True, help="Property path left unmasked (repeatable).")
@json_option
def define_cmd(
    name: str,
    app: str,
    description: str,
    schema: str | None,
    owner: str,
    mode: str,
    allow: tuple[str, ...],
    as_json: bool,
) -> None:
    """Define (or replace) a tracking point.

    Modes: record keeps events as sent; warn flags properties that break the schema;
    reject also removes properties the schema does not declare. Events are never dropped.
    """
    body = {
        "description": description,
        "properties_schema": _schema(schema) or {},
        "owner": owner,
        "mode": mode,
        "pii_allowed": list(allow),
    }
    out = ApiClient().call("PUT", f"/api/v1/apps/{app}/events/{quote(name, safe='')}", json_body=body)
    emit(out, as_json)


@events_group.command("list")
@click.option("--app", required=True, help="App name.")
@click.option("--builtin", is_flag=True, help="Also list the built-in UX monitoring events.")
@paged
@json_option
def list_cmd(app: str, builtin: bool, limit: int, offset: int, as_json: bool) -> None:
    """List an app's tracking points."""
    params = {"limit": limit, "offset": offset, "builtin": "true" if builtin else None}
    out = ApiClient().call("GET", f"/api/v1/apps/{app}/events", params=params)
    if as_json:
        emit_json(out)
        return
    emit_table(out["items"] + out.get("builtin", []), COLUMNS)


@events_group.command("show")
@click.argument("name")
@click.option("--app", required=True, help="App name.")
@json_option
def show_cmd(name: str, app: str, as_json: bool) -> None:
    """Show a tracking point, with its schema."""
    out = ApiClient().call("GET", f"/api/v1/apps/{app}/events/{quote(name, safe='')}")
    if as_json:
        emit_json(out)
        return
    emit_record(out, ["name", "mode", "owner", "builtin", "description", "pii_allowed"])
    click.echo("properties_schema:")
    click.echo(json.dumps(out["properties_schema"], indent=2))
