"""`mpaas risk cases|shadow|backtest|replay` and `mpaas risk lists import`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mpaas.cli.client import ApiClient
from mpaas.cli.errors import CliError
from mpaas.cli.output import emit, emit_json, emit_record, emit_table, json_option
from mpaas.cli.risk import ENTITIES, lists_group, risk_group

SCENES = ["transfer", "login", "device_binding", "card_binding", "phone_change", "reward_claim"]
MAX_CSV = 8 << 20


@lists_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def lists_import_cmd(file: Path) -> None:
    """Import FILE.csv (kind,entity,value,reason,expires_at): every line or none."""
    if file.stat().st_size > MAX_CSV:
        raise CliError(f"{file} is larger than {MAX_CSV} bytes")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{file} is not UTF-8 text") from None
    out = ApiClient().call("POST", "/api/v1/risk/lists/import", json_body={"csv": text})
    click.echo(f"imported {out['imported']} entries")


@risk_group.group("cases")
def cases_group() -> None:
    """The case queue: review and deny decisions waiting for a fraud label."""


@cases_group.command("list")
@click.option("--status", type=click.Choice(["open", "reviewed"]), default=None)
@click.option("--label", type=click.Choice(["fraud", "not_fraud"]), default=None)
@click.option("--scene", type=click.Choice(SCENES), default=None)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="Page size.")
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True, help="Skip this many.")
@json_option
def cases_list_cmd(
    status: str | None, label: str | None, scene: str | None, limit: int, offset: int, as_json: bool
) -> None:
    """List cases, newest first."""
    params: dict[str, Any] = {
        "status": status,
        "label": label,
        "scene": scene,
        "limit": limit,
        "offset": offset,
    }
    out = ApiClient().call("GET", "/api/v1/risk/cases", params=params)
    emit(out, as_json, ["id", "scene", "action", "score", "status", "label", "subject", "created_at"])


@cases_group.command("show")
@click.argument("case_id", type=click.IntRange(1))
@json_option
def cases_show_cmd(case_id: int, as_json: bool) -> None:
    """One case, with its decision's reasons."""
    out = ApiClient().call("GET", f"/api/v1/risk/cases/{case_id}")
    if as_json:
        emit_json(out)
        return
    emit_record(
        out,
        ["id", "scene", "subject", "action", "score", "status", "label", "note", "entities", "decision_id"],
    )
    if out.get("decision"):
        emit_table(out["decision"]["reasons"], ["rule", "weight", "message"])


@cases_group.command("label")
@click.argument("case_id", type=click.IntRange(1))
@click.argument("label", type=click.Choice(["fraud", "not_fraud"]))
@click.option("--note", default="", help="What the analyst found.")
def cases_label_cmd(case_id: int, label: str, note: str) -> None:
    """Label case CASE_ID fraud or not_fraud."""
    ApiClient().call("POST", f"/api/v1/risk/cases/{case_id}/label", json_body={"label": label, "note": note})
    click.echo(f"case {case_id} labelled {label}")


@cases_group.command("snooze")
@click.argument("case_id", type=click.IntRange(1))
@click.argument("rule")
@click.argument("entity", type=click.Choice(ENTITIES))
@click.option("--days", type=click.IntRange(1, 180), required=True, help="At most 180.")
@click.option("--reason", default="", help="Why (kept in the audit log).")
def cases_snooze_cmd(case_id: int, rule: str, entity: str, days: int, reason: str) -> None:
    """Ignore RULE for the case's ENTITY for --days (the case must be labelled)."""
    body = {"rule": rule, "entity": entity, "days": days, "reason": reason}
    out = ApiClient().call("POST", f"/api/v1/risk/cases/{case_id}/snooze", json_body=body)
    click.echo(f"{rule} snoozed for {entity} {out['value']} until {out['expires_at']}")


@risk_group.group("shadow")
def shadow_group() -> None:
    """Shadow mode: a draft rule set evaluated beside the live one, with no effect."""


@shadow_group.command("set")
@click.argument("scene", type=click.Choice(SCENES))
@click.argument("version", type=click.IntRange(1))
def shadow_set_cmd(scene: str, version: int) -> None:
    """Evaluate draft VERSION beside SCENE's live rule set."""
    ApiClient().call("PUT", f"/api/v1/risk/shadow/{scene}", json_body={"version": version})
    click.echo(f"{scene}@{version} is the shadow of {scene}")


@shadow_group.command("clear")
@click.argument("scene", type=click.Choice(SCENES))
def shadow_clear_cmd(scene: str) -> None:
    """Stop SCENE's shadow (its results stay for the report)."""
    ApiClient().call("DELETE", f"/api/v1/risk/shadow/{scene}")
    click.echo(f"{scene} has no shadow now")


@shadow_group.command("report")
@click.argument("scene", type=click.Choice(SCENES))
@json_option
def shadow_report_cmd(scene: str, as_json: bool) -> None:
    """How often the shadow disagreed with the live answers, and where."""
    out = ApiClient().call("GET", f"/api/v1/risk/shadow/{scene}")
    if as_json:
        emit_json(out)
        return
    click.echo(
        f"shadow {out['shadow'] or '-'}: {out['disagreements']} of {out['decisions']} decisions disagree"
    )
    emit_table(out["matrix"], ["live", "shadow", "count"])


@risk_group.command("backtest")
@click.option("--ruleset", "version", type=click.IntRange(1), required=True, help="The version to test.")
@click.option("--since", required=True, help="ISO 8601 time: decisions stored since then.")
@click.option("--scene", type=click.Choice(SCENES), default="transfer", show_default=True)
@json_option
def backtest_cmd(version: int, since: str, scene: str, as_json: bool) -> None:
    """Re-evaluate stored decisions with rule set --ruleset and print what would change."""
    body = {"scene": scene, "version": version, "since": since}
    out = ApiClient().call("POST", "/api/v1/risk/backtests", json_body=body)
    if as_json:
        emit_json(out)
        return
    click.echo(
        f"{out['ruleset']} on {out['decisions']} decisions since {out['since']}: {out['changed']} change"
    )
    rows = []
    for group, tally in out["by_label"].items():
        moves = ", ".join(f"{k} {v}" for k, v in tally["moves"].items()) or "-"
        rows.append(
            {"label": group, "decisions": tally["decisions"], "changed": tally["changed"], "moves": moves}
        )
    emit_table(rows, ["label", "decisions", "changed", "moves"])


@risk_group.command("replay")
@click.argument("decision_id")
@json_option
def replay_cmd(decision_id: str, as_json: bool) -> None:
    """Replay a stored decision with its own rule set version; exits 1 if it differs."""
    from urllib.parse import quote

    out = ApiClient().call("GET", f"/api/v1/risk/decisions/{quote(decision_id, safe='')}/replay")
    if as_json:
        emit_json(out)
    else:
        click.echo(
            f"{out['id']}: {'identical' if out['identical'] else 'DIFFERENT'} ({out['replayed']['action']})"
        )
    if not out["identical"]:
        raise SystemExit(1)
