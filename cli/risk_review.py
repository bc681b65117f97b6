"""`mpaas risk rules submit|approve|activate|diff|history`: the four-eyes steps of a rule set."""

from __future__ import annotations

from urllib.parse import quote

import click

from mpaas.cli.client import ApiClient
from mpaas.cli.output import emit, emit_json, emit_table, json_option
from mpaas.cli.risk import RULESETS, rules_group

scene_option = click.option("--scene", default="transfer", show_default=True, help="The scene.")


def _path(scene: str, version: int) -> str:
    return f"{RULESETS}/{quote(scene, safe='')}/{version}"


def _step(action: str, done: str, help_text: str) -> None:
    @rules_group.command(action, help=help_text)
    @click.argument("version", type=click.IntRange(1))
    @scene_option
    @json_option
    def step(version: int, scene: str, as_json: bool) -> None:
        out = ApiClient().call("POST", f"{_path(scene, version)}/{action}")
        if as_json:
            emit_json(out)
            return
        click.echo(f"{done} {out['label']} (now {out['status']})")


_step("submit", "submitted", "Submit draft VERSION for review by a second person.")
_step("approve", "approved", "Approve VERSION in review (you must not be its submitter).")
_step("activate", "activated", "Activate approved VERSION (you must not be its submitter).")


@rules_group.command("diff")
@click.argument("v1", type=click.IntRange(1))
@click.argument("v2", type=click.IntRange(1))
@scene_option
@json_option
def diff_cmd(v1: int, v2: int, scene: str, as_json: bool) -> None:
    """What changed from version V1 to version V2."""
    out = ApiClient().call("GET", f"{_path(scene, v1)}/diff/{v2}")
    if as_json:
        emit_json(out)
        return
    for rule in out["added"]:
        click.echo(f"+ {rule['name']}  weight {rule['weight']:g}  {rule['expr']}")
    for rule in out["removed"]:
        click.echo(f"- {rule['name']}  weight {rule['weight']:g}  {rule['expr']}")
    for rule in out["changed"]:
        for name, change in rule["fields"].items():
            click.echo(f"~ {rule['name']}.{name}: {change['from']} -> {change['to']}")
    for key in ("thresholds", "model", "fail_mode"):
        if key in out:
            click.echo(f"~ {key}: {out[key]['from']} -> {out[key]['to']}")
    if not any(out[k] for k in ("added", "removed", "changed")) and not any(
        k in out for k in ("thresholds", "model", "fail_mode")
    ):
        click.echo("(no change)")


@rules_group.command("history")
@click.argument("version", type=click.IntRange(1))
@scene_option
@json_option
def history_cmd(version: int, scene: str, as_json: bool) -> None:
    """Who drafted, submitted, approved and activated VERSION, and when (the audit log)."""
    out = ApiClient().call("GET", f"{_path(scene, version)}/history")
    if as_json:
        emit(out, True)
        return
    emit_table(out["items"], ["at", "action", "actor"])
