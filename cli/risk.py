"""`mpaas risk …`: show and load risk rules (a loaded file is a draft; four eyes activate it, and
the new version takes effect in every server within one poll, no deploy), keep the
deny/allow/watch lists, and read stored decisions. Review steps, cases, shadows and backtests
are in ``risk_review`` and ``risk_cases``."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import yaml

from mpaas.cli.client import ApiClient
from mpaas.cli.errors import CliError
from mpaas.cli.output import emit, emit_json, emit_record, emit_table, json_option

RULESETS = "/api/v1/risk/rulesets"
LISTS = "/api/v1/risk/lists"
MAX_FILE = 256 << 10
ENTITIES = ["counterparty", "account", "device", "ip", "user", "card_bin"]
scene_option = click.option("--scene", default=None, help="Scene (default: the file's, else transfer).")


@click.group("risk")
def risk_group() -> None:
    """The risk engine: CEL rule sets, lists and decisions (docs/risk.md)."""


@risk_group.group("rules")
def rules_group() -> None:
    """Rule sets: each load is a new, immutable draft; submit, approve (a second person) and activate it."""


def _show_document(out: dict[str, Any]) -> None:
    doc = out["document"]
    click.echo(f"rule set {out['label']}")
    limits = doc["thresholds"]
    click.echo(f"thresholds: challenge {limits['challenge']:g}, deny {limits['deny']:g}")
    emit_table(doc["rules"], ["name", "weight", "expr", "message"])


@rules_group.command("show")
@scene_option
@click.option("--version", "version", type=click.IntRange(1), default=None, help="A stored version.")
@json_option
def show_cmd(scene: str | None, version: int | None, as_json: bool) -> None:
    """Show the active rule set (or one stored version) with its rules."""
    scene = quote(scene or "transfer", safe="")
    client = ApiClient()
    out = client.call("GET", f"{RULESETS}/{scene}/{version if version else 'active'}")
    if as_json:
        emit_json(out)
        return
    _show_document(out)


@rules_group.command("list")
@scene_option
@json_option
def list_cmd(scene: str | None, as_json: bool) -> None:
    """List stored versions, newest first."""
    out = ApiClient().call("GET", RULESETS, params={"scene": scene})
    emit(
        out,
        as_json,
        ["label", "status", "rules", "created_by", "submitted_by", "approved_by", "activated_at"],
    )


@rules_group.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@scene_option
@json_option
def load_cmd(file: Path, scene: str | None, as_json: bool) -> None:
    """Validate FILE (YAML or JSON) and store it as a new draft version."""
    if file.stat().st_size > MAX_FILE:
        raise CliError(f"{file} is larger than {MAX_FILE} bytes")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CliError(f"{file} is not valid YAML or JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise CliError(f"{file} must hold an object with 'thresholds' and 'rules'")
    if scene is not None:
        data["scene"] = scene
    out = ApiClient().call("POST", RULESETS, json_body=data)
    if as_json:
        emit_json(out)
        return
    click.echo(f"stored draft {out['label']} ({out['rules']} rules); next: mpaas risk rules submit")


@risk_group.group("lists")
def lists_group() -> None:
    """Deny, allow and watch lists of counterparties, accounts, devices, IPs and users."""


@lists_group.command("add")
@click.argument("kind", type=click.Choice(["deny", "allow", "watch"]))
@click.argument("entity", type=click.Choice(ENTITIES))
@click.argument("value")
@click.option("--reason", default="", help="Why (kept with the entry and in the audit log).")
@click.option("--expires", default=None, help="ISO 8601 time after which the entry no longer counts.")
def lists_add_cmd(kind: str, entity: str, value: str, reason: str, expires: str | None) -> None:
    """Put VALUE on the KIND list of ENTITY values."""
    body = {"kind": kind, "entity": entity, "value": value, "reason": reason, "expires_at": expires}
    ApiClient().call("POST", LISTS, json_body={k: v for k, v in body.items() if v is not None})
    click.echo(f"added {value} to the {kind} list of {entity}s")


@lists_group.command("remove")
@click.argument("kind", type=click.Choice(["deny", "allow", "watch"]))
@click.argument("entity", type=click.Choice(ENTITIES))
@click.argument("value")
def lists_remove_cmd(kind: str, entity: str, value: str) -> None:
    """Take VALUE off the KIND list of ENTITY values."""
    ApiClient().call("DELETE", f"{LISTS}/{kind}/{entity}/{quote(value, safe='')}")
    click.echo(f"removed {value} from the {kind} list of {entity}s")


@lists_group.command("list")
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True, help="Page size.")
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True, help="Skip this many.")
@json_option
def lists_list_cmd(limit: int, offset: int, as_json: bool) -> None:
    """List entries, oldest first."""
    out = ApiClient().call("GET", LISTS, params={"limit": limit, "offset": offset})
    emit(out, as_json, ["kind", "entity", "value", "reason", "expires_at", "created_by"])


@risk_group.command("decision")
@click.argument("decision_id")
@json_option
def decision_cmd(decision_id: str, as_json: bool) -> None:
    """Show one stored decision: action, score, each rule's outcome and the values read."""
    out = ApiClient().call("GET", f"/api/v1/risk/decisions/{quote(decision_id, safe='')}")
    if as_json:
        emit_json(out)
        return
    emit_record(out, ["id", "scene", "subject", "ruleset_version", "action", "score", "created_at"])
    emit_table(out["reasons"], ["rule", "weight", "message"])
    click.echo("outcomes: " + ", ".join(f"{k}={v}" for k, v in out["outcomes"].items()))
    click.echo(f"inputs: {out['inputs']}")


# The review, case, shadow and backtest commands attach themselves to the groups above;
# the model centre's commands are their own group (cli/risk_models.py).
from mpaas.cli import risk_cases, risk_review  # noqa: E402, F401
from mpaas.cli.risk_models import models_group  # noqa: E402

risk_group.add_command(models_group)
