"""Admin commands over HTTP: login, tokens, apps, channels and the audit log."""

from __future__ import annotations

import os

import click

from mpaas.cli.client import ApiClient
from mpaas.cli.config import Target, config_path, forget_target, save_target, server_url_problem
from mpaas.cli.durations import duration_option_value
from mpaas.cli.output import emit, emit_json, json_option
from mpaas.identity.roles import ROLES

page_options = [
    click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="Page size."),
    click.option("--offset", type=click.IntRange(0), default=0, show_default=True, help="Skip this many."),
]


def paged(fn):  # type: ignore[no-untyped-def]
    for option in reversed(page_options):
        fn = option(fn)
    return fn


def _server_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    problem = server_url_problem(value)
    if problem is not None:
        raise click.BadParameter(problem, ctx=ctx, param=param)
    return value.strip().rstrip("/")


@click.command("login")
@click.argument("server_arg", metavar="[SERVER]", required=False, callback=_server_option)
@click.option(
    "--server",
    callback=_server_option,
    help="Server URL with its scheme, e.g. https://mpaas.example.com or http://127.0.0.1:8080",
)
@click.option("--token", prompt=True, hide_input=True, help="API token (prompted when omitted).")
def login_cmd(server_arg: str | None, server: str | None, token: str) -> None:
    """Check a token against a server and store both in the user's config.

    SERVER (or --server) is the server's URL with its scheme: http://127.0.0.1:8080.
    """
    if server_arg is not None and server is not None and server_arg != server:
        raise click.UsageError("give the server once: as SERVER or as --server")
    url = server_arg or server
    if url is None:
        raise click.UsageError("give the server's URL, e.g. `mpaas login http://127.0.0.1:8080`")
    client = ApiClient(Target(url, token.strip()))
    me = client.call("GET", "/api/v1/whoami")
    path = save_target(url, token.strip(), name=me.get("name"), role=me.get("role"))
    scope = f"; limited to the apps {', '.join(me['apps'])}" if me.get("apps") else ""
    click.echo(f"logged in to {url} as {me['name']} ({me['role']}){scope}; saved to {path}", err=True)


@click.command("logout")
@json_option
def logout_cmd(as_json: bool) -> None:
    """Forget the stored server and token (the token stays valid: revoke it to end it)."""
    path = config_path()
    removed = forget_target()
    if as_json:
        emit_json({"config": str(path), "removed": removed})
        return
    if not removed["had_token"] and not removed.get("server"):
        click.echo(f"not logged in: nothing stored in {path}", err=True)
    else:
        who = f" as {removed['name']} ({removed['role']})" if removed.get("name") else ""
        server = removed.get("server") or "?"
        click.echo(f"logged out of {server}{who}: removed the stored server and token from {path}", err=True)
    if os.environ.get("MPAAS_TOKEN"):
        click.echo("note: MPAAS_TOKEN is still set in this environment and is still used", err=True)


@click.command("whoami")
@json_option
def whoami_cmd(as_json: bool) -> None:
    """Show the server the CLI talks to and who it is logged in as."""
    client = ApiClient()
    me = client.call("GET", "/api/v1/whoami")
    out = {"server": client.target.server} | me
    if not as_json and out.get("apps") is None:
        out["apps"] = "all"
    emit(out, as_json)


@click.group("tokens")
def tokens_group() -> None:
    """Admin API tokens (admin role)."""


@tokens_group.command("create")
@click.option("--role", required=True, type=click.Choice(list(ROLES)))
@click.option("--name", help="A label, e.g. ci-pipeline.")
@click.option(
    "--expires",
    metavar="DURATION",
    help="Expire after this long: 90d, 12h, 30m, 2w (default: never).",
)
@click.option(
    "--app",
    "apps",
    multiple=True,
    help="Limit the token to this app (repeat for several; default: every app).",
)
@json_option
def tokens_create(
    role: str, name: str | None, expires: str | None, apps: tuple[str, ...], as_json: bool
) -> None:
    """Create a token and print only the token, so scripts can capture it."""
    body: dict[str, object] = {"role": role, "name": name}
    if apps:
        body["apps"] = list(apps)
    if expires is not None:
        body["expires_in_seconds"] = duration_option_value(expires, "--expires")
    out = ApiClient().call("POST", "/api/v1/tokens", json_body=body)
    emit_json(out) if as_json else click.echo(out["token"])


@tokens_group.command("list")
@json_option
def tokens_list(as_json: bool) -> None:
    """List tokens (never their secrets)."""
    emit(
        ApiClient().call("GET", "/api/v1/tokens"),
        as_json,
        ["id", "name", "role", "apps", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at"],
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
@click.option("--require-signing", is_flag=True, help="Refuse publishes while the app has no TUF keys.")
@json_option
def apps_create(name: str, platforms: tuple[str, ...], require_signing: bool, as_json: bool) -> None:
    """Create an app; it gets staging and production channels with deployment keys."""
    body = {"name": name, "platforms": list(platforms), "require_signing": require_signing}
    out = ApiClient().call("POST", "/api/v1/apps", json_body=body)
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
    emit(out, as_json, ["name", "platforms", "require_signing", "created_at"])


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
