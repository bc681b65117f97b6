"""Admin commands over HTTP: login, tokens, apps, channels and the audit log."""

from __future__ import annotations

import click

from mpaas.cli.client import ApiClient
from mpaas.cli.config import Target, save_target
from mpaas.cli.output import emit, emit_json, json_option

page_options = [
    click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="Page size."),
    click.option("--offset", type=click.IntRange(0), default=0, show_default=True, help="Skip this many."),
]


def paged(fn):  # type: ignore[no-untyped-def]
    for option in reversed(page_options):
        fn = option(fn)
    return fn


@click.command("login")
@click.option("--server", required=True, help="Server URL, e.g. https://mpaas.example.com")
@click.option("--token", prompt=True, hide_input=True, help="API token (prompted when omitted).")
def login_cmd(server: str, token: str) -> None:
    """Check a token against a server and store both in the user's config."""
    client = ApiClient(Target(server.rstrip("/"), token.strip()))
    me = client.call("GET", "/api/v1/whoami")
    path = save_target(server, token.strip())
    click.echo(f"logged in to {server} as {me['name']} ({me['role']}); saved to {path}", err=True)


@click.command("whoami")
@json_option
def whoami_cmd(as_json: bool) -> None:
    """Show which token the CLI is using."""
    emit(ApiClient().call("GET", "/api/v1/whoami"), as_json)


@click.group("tokens")
def tokens_group() -> None:
    """Admin API tokens (admin role)."""


@tokens_group.command("create")
@click.option(
    "--role", required=True, type=click.Choice(["admin", "release-manager", "analyst", "push-operator"])
)
@click.option("--name", help="A label, e.g. ci-pipeline.")
@json_option
def tokens_create(role: str, name: str | None, as_json: bool) -> None:
    """Create a token and print only the token, so scripts can capture it."""
    out = ApiClient().call("POST", "/api/v1/tokens", json_body={"role": role, "name": name})
    emit_json(out) if as_json else click.echo(out["token"])


@tokens_group.command("list")
@json_option
def tokens_list(as_json: bool) -> None:
    """List tokens (never their secrets)."""
    emit(
        ApiClient().call("GET", "/api/v1/tokens"),
        as_json,
        ["id", "name", "role", "prefix", "created_at", "revoked_at", "last_used_at"],
    )


@tokens_group.command("revoke")
@click.argument("token_id", type=int)
@json_option
def tokens_revoke(token_id: int, as_json: bool) -> None:
    """Revoke a token by id (see `mpaas tokens list`)."""
    out = ApiClient().call("DELETE", f"/api/v1/tokens/{token_id}")
    emit_json(out) if as_json else click.echo(f"revoked token {token_id} ({out['name']})", err=True)


@click.group("apps")
def apps_group() -> None:
    """Apps (tenants)."""


@apps_group.command("create")
@click.argument("name")
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    required=True,
    type=click.Choice(["ios", "android"]),
    help="Repeat for each platform.",
)
@json_option
def apps_create(name: str, platforms: tuple[str, ...], as_json: bool) -> None:
    """Create an app; it gets staging and production channels with deployment keys."""
    out = ApiClient().call("POST", "/api/v1/apps", json_body={"name": name, "platforms": list(platforms)})
    if as_json:
        emit_json(out)
        return
    click.echo(f"created app {out['name']} ({', '.join(out['platforms'])})")
    emit({"items": out["channels"]}, False, ["name", "deployment_key"])


@apps_group.command("list")
@paged
@json_option
def apps_list(limit: int, offset: int, as_json: bool) -> None:
    """List apps."""
    out = ApiClient().call("GET", "/api/v1/apps", params={"limit": limit, "offset": offset})
    emit(out, as_json, ["name", "platforms", "created_at"])


@apps_group.command("show")
@click.argument("name")
@json_option
def apps_show(name: str, as_json: bool) -> None:
    """Show one app."""
    emit(ApiClient().call("GET", f"/api/v1/apps/{name}"), as_json)


@click.group("channels")
def channels_group() -> None:
    """Release channels and their deployment keys."""


@channels_group.command("list")
@click.option("--app", required=True, help="App name.")
@json_option
def channels_list(app: str, as_json: bool) -> None:
    """List an app's channels with their deployment keys."""
    emit(
        ApiClient().call("GET", f"/api/v1/apps/{app}/channels"),
        as_json,
        ["name", "deployment_key", "created_at"],
    )


@channels_group.command("create")
@click.argument("name")
@click.option("--app", required=True, help="App name.")
@json_option
def channels_create(name: str, app: str, as_json: bool) -> None:
    """Create a channel with a new deployment key."""
    emit(ApiClient().call("POST", f"/api/v1/apps/{app}/channels", json_body={"name": name}), as_json)


@channels_group.command("rotate-key")
@click.argument("name")
@click.option("--app", required=True, help="App name.")
@json_option
def channels_rotate(name: str, app: str, as_json: bool) -> None:
    """Replace a channel's deployment key (clients with the old key stop getting updates)."""
    emit(ApiClient().call("POST", f"/api/v1/apps/{app}/channels/{name}/rotate-key"), as_json)


@click.group("audit")
def audit_group() -> None:
    """The audit log."""


@audit_group.command("list")
@click.option("--app", help="Only entries about this app.")
@click.option("--action", help="Only this action, e.g. app.create.")
@paged
@json_option
def audit_list(app: str | None, action: str | None, limit: int, offset: int, as_json: bool) -> None:
    """Show who did what, newest first."""
    out = ApiClient().call(
        "GET", "/api/v1/audit", params={"app": app, "action": action, "limit": limit, "offset": offset}
    )
    emit(out, as_json, ["at", "actor", "action", "target", "app"])
