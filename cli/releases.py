"""`mpaas release …` and `mpaas releases …`: list, show, history, pause, resume, patch, rollback, promote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mpaas.cli.admin import paged
from mpaas.cli.client import ApiClient
from mpaas.cli.errors import CliError
from mpaas.cli.output import emit, emit_json, emit_record, json_option

KIND = click.Choice(["offline", "bundle", "hotfix"])
STATUS = click.Choice(["active", "paused", "halted", "rolled_back"])
COLUMNS = [
    "id",
    "channel",
    "kind",
    "package_id",
    "label",
    "version",
    "rollout",
    "status",
    "mandatory",
    "created_at",
]
SHOW_KEYS = [
    "id",
    "channel",
    "kind",
    "package_id",
    "label",
    "version",
    "embedded",
    "package_hash",
    "target_binary_range",
    "mandatory",
    "rollout",
    "rules",
    "whitelist",
    "starts_at",
    "status",
    "status_reason",
    "rollback_of",
    "promoted_from",
    "auto_halt",
    "failure_rate",
    "created_by",
    "created_at",
]


def read_whitelist(path: Path) -> dict[str, list[str]]:
    """One id per line: ``device:ID``, ``user:ID`` or a bare device id; ``#`` starts a comment."""
    out: dict[str, list[str]] = {"device_ids": [], "user_ids": []}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read whitelist {path}: {exc.strerror}") from None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        prefix, sep, value = line.partition(":")
        if sep and prefix in ("device", "user"):
            out[f"{prefix}_ids"].append(value.strip())
        else:
            out["device_ids"].append(line)
    return out


def _show(out: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(out)
        return
    emit_record(out, SHOW_KEYS)
    counters = out.get("counters") or {}
    click.echo("counters: " + "  ".join(f"{k}={v}" for k, v in counters.items()))


@click.command("release")
@click.argument("package_id")
@click.argument("version")
@click.option("--app", required=True, help="App name.")
@click.option("--channel", required=True, help="Channel (e.g. staging, production).")
@click.option("--kind", type=KIND, help="Needed only when the id exists as several kinds.")
@click.option("--rollout", type=click.FloatRange(0, 100), default=100.0, show_default=True, help="Percent.")
@click.option("--rule", "rules", multiple=True, help="Targeting rule, e.g. os=ios or 'app_version>=5.2'.")
@click.option("--whitelist", type=click.Path(path_type=Path), help="File of device:ID / user:ID lines.")
@click.option("--mandatory", is_flag=True, help="Clients must install this update.")
@click.option("--target-binary", help="Binary versions this release is for, e.g. '>=5.2 <6'.")
@click.option("--description", help="Release notes shown to users (defaults to the package's).")
@click.option("--start-at", help="ISO 8601 time before which only whitelisted devices get it.")
@click.option("--halt-failure-rate", type=click.FloatRange(0, 1), default=0.2, show_default=True)
@click.option("--halt-min-reports", type=click.IntRange(1), default=50, show_default=True)
@json_option
def release_cmd(
    package_id: str,
    version: str,
    app: str,
    channel: str,
    kind: str | None,
    rollout: float,
    rules: tuple[str, ...],
    whitelist: Path | None,
    mandatory: bool,
    target_binary: str | None,
    description: str | None,
    start_at: str | None,
    halt_failure_rate: float,
    halt_min_reports: int,
    as_json: bool,
) -> None:
    """Release a published package version on a channel."""
    body: dict[str, Any] = {
        "package_id": package_id,
        "version": version,
        "kind": kind,
        "rollout": rollout,
        "rules": list(rules),
        "mandatory": mandatory,
        "target_binary_range": target_binary,
        "description": description,
        "starts_at": start_at,
        "halt_failure_rate": halt_failure_rate,
        "halt_min_reports": halt_min_reports,
    }
    if whitelist is not None:
        body["whitelist"] = read_whitelist(whitelist)
    body = {k: v for k, v in body.items() if v is not None}
    out = ApiClient().call("POST", f"/api/v1/apps/{app}/channels/{channel}/releases", json_body=body)
    _show(out, as_json)


@click.group("releases")
def releases_group() -> None:
    """Releases on channels: rollout, pause, rollback, promote."""


@releases_group.command("list")
@click.option("--app", required=True, help="App name.")
@click.option("--channel", help="Only this channel.")
@click.option("--kind", type=KIND, help="Only this kind.")
@click.option("--id", "package_id", help="Only this package id.")
@click.option("--status", type=STATUS, help="Only this status.")
@paged
@json_option
def releases_list(
    app: str,
    channel: str | None,
    kind: str | None,
    package_id: str | None,
    status: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List releases, newest first."""
    params = {
        "channel": channel,
        "kind": kind,
        "id": package_id,
        "status": status,
        "limit": limit,
        "offset": offset,
    }
    out = ApiClient().call("GET", f"/api/v1/apps/{app}/releases", params=params)
    emit(out, as_json, COLUMNS)


@releases_group.command("show")
@click.argument("release_id", type=int)
@click.option("--app", required=True, help="App name.")
@json_option
def releases_show(release_id: int, app: str, as_json: bool) -> None:
    """Show a release, its rollout state and its counters."""
    _show(ApiClient().call("GET", f"/api/v1/apps/{app}/releases/{release_id}"), as_json)


def _action(name: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @click.argument("release_id", type=int)
    @click.option("--app", required=True, help="App name.")
    @json_option
    def command(release_id: int, app: str, as_json: bool) -> None:
        _show(ApiClient().call("POST", f"/api/v1/apps/{app}/releases/{release_id}/{name}"), as_json)

    return command


releases_group.add_command(_action("pause", "Stop offering a release to more devices."))
releases_group.add_command(_action("resume", "Resume a paused or auto-halted release."))


@releases_group.command("set-rollout")
@click.argument("release_id", type=int)
@click.argument("percent", type=click.FloatRange(0, 100))
@click.option("--app", required=True, help="App name.")
@json_option
def releases_set_rollout(release_id: int, percent: float, app: str, as_json: bool) -> None:
    """Set the rollout percentage; raising it keeps every device already in."""
    out = ApiClient().call(
        "POST", f"/api/v1/apps/{app}/releases/{release_id}/rollout", json_body={"rollout": percent}
    )
    _show(out, as_json)


@releases_group.command("patch")
@click.argument("release_id", type=int)
@click.option("--app", required=True, help="App name.")
@click.option("--description", help="New release notes.")
@click.option("--mandatory/--not-mandatory", default=None, help="Whether clients must install it.")
@click.option("--rollout", type=click.FloatRange(0, 100), help="New rollout percentage.")
@json_option
def releases_patch(
    release_id: int,
    app: str,
    description: str | None,
    mandatory: bool | None,
    rollout: float | None,
    as_json: bool,
) -> None:
    """Change a live release's description, mandatory flag or rollout."""
    body = {"description": description, "mandatory": mandatory, "rollout": rollout}
    body = {k: v for k, v in body.items() if v is not None}
    if not body:
        raise CliError("nothing to change: give --description, --mandatory/--not-mandatory or --rollout", 2)
    out = ApiClient().call("PATCH", f"/api/v1/apps/{app}/releases/{release_id}", json_body=body)
    _show(out, as_json)


@releases_group.command("promote")
@click.argument("release_id", type=int)
@click.option("--app", required=True, help="App name.")
@click.option("--to", "channel", default="production", show_default=True, help="Target channel.")
@click.option("--rollout", type=click.FloatRange(0, 100), help="Rollout percentage (default: the source's).")
@click.option("--description", help="Release notes (default: the source's).")
@click.option("--mandatory/--not-mandatory", default=None, help="Default: the source's.")
@json_option
def releases_promote(
    release_id: int,
    app: str,
    channel: str,
    rollout: float | None,
    description: str | None,
    mandatory: bool | None,
    as_json: bool,
) -> None:
    """Release the same package on another channel with the same settings (unless given)."""
    body = {"channel": channel, "rollout": rollout, "description": description, "mandatory": mandatory}
    body = {k: v for k, v in body.items() if v is not None}
    out = ApiClient().call("POST", f"/api/v1/apps/{app}/releases/{release_id}/promote", json_body=body)
    _show(out, as_json)


@releases_group.command("rollback")
@click.argument("package_id")
@click.option("--app", required=True, help="App name.")
@click.option("--channel", required=True, help="Channel.")
@click.option("--kind", type=KIND, help="Needed only when the id is released as several kinds.")
@click.option(
    "--to",
    "to_release",
    type=click.IntRange(1),
    metavar="RELEASE_ID",
    help="Go back to this earlier release (see `mpaas releases history`), not just the previous one.",
)
@click.option("--to-embedded", is_flag=True, help="Return devices to the version inside the binary.")
@click.option("--mandatory", is_flag=True, help="Clients must install the rollback.")
@json_option
def releases_rollback(
    package_id: str,
    app: str,
    channel: str,
    kind: str | None,
    to_release: int | None,
    to_embedded: bool,
    mandatory: bool,
    as_json: bool,
) -> None:
    """Withdraw the newest release of a package; devices go back to the previous one."""
    if to_release is not None and to_embedded:
        raise CliError("give --to RELEASE_ID or --to-embedded, not both", exit_code=2)
    body = {
        "kind": kind,
        "id": package_id,
        "to_embedded": to_embedded,
        "mandatory": mandatory,
        "to_release": to_release,
    }
    body = {k: v for k, v in body.items() if v is not None}
    out = ApiClient().call("POST", f"/api/v1/apps/{app}/channels/{channel}/rollback", json_body=body)
    _show(out, as_json)


HISTORY_COLUMNS = [
    "id",
    "label",
    "kind",
    "package_id",
    "version",
    "status",
    "rollout",
    "mandatory",
    "origin",
    "created_by",
    "created_at",
    "description",
]


def _origin(row: dict[str, Any]) -> str:
    if row.get("rollback_of"):
        return f"rollback of {row['rollback_of']}" + (" to embedded" if row.get("embedded") else "")
    if row.get("promoted_from"):
        return f"promoted from {row['promoted_from']}"
    return "release"


@releases_group.command("history")
@click.option("--app", required=True, help="App name.")
@click.option("--channel", required=True, help="Channel.")
@click.option("--id", "package_id", help="Only this package id.")
@click.option("--kind", type=KIND, help="Only this kind.")
@paged
@json_option
def releases_history(
    app: str,
    channel: str,
    package_id: str | None,
    kind: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """A channel's releases, newest first: label, version, status, and where each came from."""
    params = {"channel": channel, "id": package_id, "kind": kind, "limit": limit, "offset": offset}
    out = ApiClient().call("GET", f"/api/v1/apps/{app}/releases", params=params)
    if as_json:
        emit_json(out)
        return
    out["items"] = [row | {"origin": _origin(row)} for row in out["items"]]
    emit(out, False, HISTORY_COLUMNS)
