"""`mpaas banking …` (catalogues, users) and `mpaas gateway …` (app keys, device keys)."""

from __future__ import annotations

from pathlib import Path

import click

from mpaas.cli.client import ApiClient
from mpaas.cli.errors import CliError
from mpaas.cli.output import emit, emit_json, emit_record, emit_table, json_option

app_option = click.option("--app", required=True, help="App name.")


@click.group("banking")
def banking_group() -> None:
    """The bank's catalogue and users."""


@banking_group.group("catalog")
def catalog_group() -> None:
    """The catalogue apps load: mini-programs and products per tier."""


@catalog_group.command("put")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@app_option
@json_option
def catalog_put(file: Path, app: str, as_json: bool) -> None:
    """Publish FILE (YAML, or JSON for *.json) as the app's next catalogue version."""
    raw = file.read_bytes()
    if len(raw) > 256 << 10:
        raise CliError(f"{file} is larger than 256 KiB", exit_code=2)
    kind = "application/json" if file.suffix.lower() == ".json" else "application/yaml"
    out = ApiClient().call("PUT", f"/api/v1/apps/{app}/catalog", data=raw, headers={"Content-Type": kind})
    if as_json:
        emit_json(out)
        return
    doc = out["document"]
    click.echo(
        f"catalogue v{out['version']} of {app}: {len(doc['mini_programs'])} mini-programs, "
        f"{len(doc['products'])} products"
    )


@catalog_group.command("show")
@app_option
@json_option
def catalog_show(app: str, as_json: bool) -> None:
    """The app's current catalogue."""
    out = ApiClient().call("GET", f"/api/v1/apps/{app}/catalog")
    if as_json:
        emit_json(out)
        return
    click.echo(f"catalogue v{out['version']} of {app}")
    click.echo("mini-programs:")
    emit_table(out["document"]["mini_programs"], ["id", "kind", "title", "min_tier", "tiers", "platforms"])
    click.echo("products:")
    emit_table(out["document"]["products"], ["id", "title", "min_tier", "tiers"])


@catalog_group.command("versions")
@app_option
@json_option
def catalog_versions(app: str, as_json: bool) -> None:
    """Every catalogue version of the app, newest first."""
    emit(
        ApiClient().call("GET", f"/api/v1/apps/{app}/catalog/versions"),
        as_json,
        ["version", "created_by", "created_at"],
    )


@banking_group.group("users")
def users_group() -> None:
    """Bank users: tiers, in-branch verification, sessions."""


@users_group.command("show")
@click.argument("user_id")
@app_option
@json_option
def user_show(user_id: str, app: str, as_json: bool) -> None:
    """A user's profile, tier history and sessions."""
    out = ApiClient().call("GET", f"/api/v1/apps/{app}/bank-users/{user_id}")
    if as_json:
        emit_json(out)
        return
    emit_record(out, ["user_id", "phone", "tier", "name", "card", "branch_verified", "created_at"])
    click.echo("tier history:")
    emit_table(out["tier_history"], ["at", "from_tier", "to_tier", "reason", "actor"])


@users_group.command("verify-branch")
@click.argument("user_id")
@app_option
@click.option("--clear", is_flag=True, help="Clear the flag instead of setting it.")
@click.option("--note", default="", help="Where and how the customer was verified (audit log).")
def user_verify_branch(user_id: str, app: str, clear: bool, note: str) -> None:
    """Set the in-branch verification flag: the e-account holder may then become a full customer."""
    body = {"verified": not clear, "note": note}
    ApiClient().call("POST", f"/api/v1/apps/{app}/bank-users/{user_id}/branch-verification", json_body=body)
    click.echo(f"{user_id}: in-branch verification {'cleared' if clear else 'set'}")


@users_group.command("revoke-sessions")
@click.argument("user_id")
@app_option
def user_revoke_sessions(user_id: str, app: str) -> None:
    """Revoke every session of a user (they must log in again)."""
    ApiClient().call("POST", f"/api/v1/apps/{app}/bank-users/{user_id}/revoke-sessions")
    click.echo(f"{user_id}: sessions revoked")


@click.group("gateway")
def gateway_group() -> None:
    """The gateway's app keys (HMAC) and device keys (ECDSA)."""


@gateway_group.group("keys")
def keys_group() -> None:
    """App keys for HMAC-signed calls."""


@keys_group.command("create")
@app_option
@json_option
def keys_create(app: str, as_json: bool) -> None:
    """Create an app key; its secret (base64) is printed once."""
    out = ApiClient().call("POST", f"/api/v1/apps/{app}/gateway/keys")
    if as_json:
        emit_json(out)
        return
    click.echo(f"kid: {out['kid']}")
    click.echo(f"secret: {out['secret']}")


@keys_group.command("list")
@app_option
@json_option
def keys_list(app: str, as_json: bool) -> None:
    """The app's keys (never their secrets)."""
    emit(
        ApiClient().call("GET", f"/api/v1/apps/{app}/gateway/keys"),
        as_json,
        ["kid", "created_by", "created_at", "revoked_at"],
    )


@keys_group.command("revoke")
@click.argument("kid")
@app_option
def keys_revoke(kid: str, app: str) -> None:
    """Revoke an app key."""
    ApiClient().call("DELETE", f"/api/v1/apps/{app}/gateway/keys/{kid}")
    click.echo(f"revoked {kid}")


@gateway_group.command("block-device")
@click.argument("device_id")
@app_option
def block_device(device_id: str, app: str) -> None:
    """Revoke a device's key: that device id is refused from now on."""
    ApiClient().call("DELETE", f"/api/v1/apps/{app}/gateway/devices/{device_id}/key")
    click.echo(f"blocked {device_id}")
