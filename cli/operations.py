"""`mpaas operations …`: list, show, enable and disable gateway operations; add and remove
upstream operations at run time (no restart: every server process picks them up)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from mpaas.cli.client import ApiClient
from mpaas.cli.errors import CliError
from mpaas.cli.output import emit, emit_json, emit_record, json_option

COLUMNS = [
    "name",
    "version",
    "kind",
    "enabled",
    "min_tier",
    "session_required",
    "rate",
    "idempotent",
    "origin",
]
TIERS = click.Choice(["visitor", "registered", "e_account", "full"])
version_option = click.option(
    "--version", "version", type=click.IntRange(1, 9999), default=1, show_default=True
)


def _path(name: str, version: int) -> str:
    return f"/api/v1/operations/{quote(name, safe='')}/{version}"


@click.group("operations")
def operations_group() -> None:
    """Gateway operations: built-in, from plug-in packages, and upstream services."""


@operations_group.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """List every operation the gateway serves (and plug-ins that failed to load)."""
    out = ApiClient().call("GET", "/api/v1/operations")
    emit(out, as_json, COLUMNS)
    if not as_json:
        for line in out.get("failed_plugins", []):
            click.echo(f"failed plug-in: {line}", err=True)


@operations_group.command("show")
@click.argument("name")
@version_option
@json_option
def show_cmd(name: str, version: int, as_json: bool) -> None:
    """Show one operation with its input and output schemas."""
    out = ApiClient().call("GET", _path(name, version))
    if as_json:
        emit_json(out)
        return
    emit_record(out, [k for k in out if not k.endswith("_schema")])
    click.echo("input schema:")
    click.echo(json.dumps(out["input_schema"], indent=2))


@operations_group.command("disable")
@click.argument("name")
@version_option
def disable_cmd(name: str, version: int) -> None:
    """Disable an operation: callers get result code 3000 until it is enabled again."""
    ApiClient().call("POST", _path(name, version) + "/disable")
    click.echo(f"disabled {name} v{version}")


@operations_group.command("enable")
@click.argument("name")
@version_option
def enable_cmd(name: str, version: int) -> None:
    """Enable an operation."""
    ApiClient().call("POST", _path(name, version) + "/enable")
    click.echo(f"enabled {name} v{version}")


@operations_group.command("add")
@click.argument("name")
@version_option
@click.option("--upstream", "url", required=True, help="URL of the bank's service (http or https).")
@click.option("--schema", "schema_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--min-tier", type=TIERS, default="registered", show_default=True)
@click.option("--no-session", is_flag=True, help="Open to signed devices without a session (tier visitor).")
@click.option("--rate", help="Token bucket per caller, such as 10/m.")
@click.option("--idempotent", is_flag=True, help="Safe to retry: retried on timeouts and 502/503/504.")
@click.option("--timeout", type=click.FloatRange(0.01, 300), help="Seconds per attempt.")
@click.option("--summary", default="", help="One line for the operation list.")
@json_option
def add_cmd(
    name: str,
    version: int,
    url: str,
    schema_file: Path | None,
    min_tier: str,
    no_session: bool,
    rate: str | None,
    idempotent: bool,
    timeout: float | None,
    summary: str,
    as_json: bool,
) -> None:
    """Add an operation served by an upstream service; prints its upstream secret once."""
    schema: Any = {}
    if schema_file is not None:
        try:
            schema = json.loads(schema_file.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise CliError(f"{schema_file}: not valid JSON ({exc})", exit_code=2) from None
    payload = {
        "name": name,
        "version": version,
        "url": url,
        "input_schema": schema,
        "min_tier": min_tier,
        "session_required": not no_session,
        "rate": rate,
        "idempotent": idempotent,
        "timeout_seconds": timeout,
        "summary": summary,
    }
    out = ApiClient().call(
        "POST", "/api/v1/operations", json_body={k: v for k, v in payload.items() if v is not None}
    )
    if as_json:
        emit_json(out)
        return
    click.echo(f"added {out['name']} v{out['version']} -> {out['url']}")
    click.echo(f"upstream secret (verify X-Mpaas-Signature with it; shown once): {out['upstream_secret']}")


@operations_group.command("remove")
@click.argument("name")
@version_option
def remove_cmd(name: str, version: int) -> None:
    """Remove an upstream operation."""
    ApiClient().call("DELETE", _path(name, version))
    click.echo(f"removed {name} v{version}")
