"""Renaming and deleting apps, channels and package versions; an app's signing policy.

Every delete asks for confirmation unless ``--yes`` is given (scripts), and the server
refuses to delete anything that still has history (a released version, a channel with
releases, an app with packages or devices) with a 409 that says why.
"""

from __future__ import annotations

import click

from mpaas.cli.admin import apps_group, channels_group
from mpaas.cli.client import ApiClient
from mpaas.cli.errors import CliError
from mpaas.cli.output import emit, emit_json, json_option
from mpaas.cli.packages import KIND, packages_group

yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def confirm(question: str, yes: bool) -> None:
    """Ask before a delete (the answer is read from stdin); no answer means no."""
    if yes:
        return
    try:
        confirmed = click.confirm(question, default=False, err=True)
    except click.Abort:
        confirmed = False
    if not confirmed:
        raise CliError("not confirmed; nothing was deleted (pass --yes to skip the question)")


@apps_group.command("update")
@click.argument("name")
@click.option("--name", "new_name", help="Rename the app (refused once it has TUF keys).")
@click.option(
    "--require-signing/--no-require-signing",
    default=None,
    help="Refuse publishes while the app has no TUF keys.",
)
@json_option
def apps_update(name: str, new_name: str | None, require_signing: bool | None, as_json: bool) -> None:
    """Rename an app or change whether it requires signing."""
    body: dict[str, object] = {}
    if new_name is not None:
        body["name"] = new_name
    if require_signing is not None:
        body["require_signing"] = require_signing
    if not body:
        raise CliError(
            "nothing to change: give --name or --require-signing/--no-require-signing", exit_code=2
        )
    emit(ApiClient().call("PATCH", f"/api/v1/apps/{name}", json_body=body), as_json)


@apps_group.command("rename")
@click.argument("name")
@click.argument("new_name")
@json_option
def apps_rename(name: str, new_name: str, as_json: bool) -> None:
    """Rename an app (its channels and deployment keys stay)."""
    out = ApiClient().call("PATCH", f"/api/v1/apps/{name}", json_body={"name": new_name})
    emit_json(out) if as_json else click.echo(f"renamed app {name} to {out['name']}", err=True)


@apps_group.command("delete")
@click.argument("name")
@yes_option
@json_option
def apps_delete(name: str, yes: bool, as_json: bool) -> None:
    """Delete an app that holds nothing (a mistake); its channels and deployment keys go too."""
    confirm(f"Delete app {name!r} and its channels' deployment keys?", yes)
    out = ApiClient().call("DELETE", f"/api/v1/apps/{name}")
    emit_json(out) if as_json else click.echo(f"deleted app {name}", err=True)


@channels_group.command("rename")
@click.argument("name")
@click.argument("new_name")
@click.option("--app", required=True, help="App name.")
@json_option
def channels_rename(name: str, new_name: str, app: str, as_json: bool) -> None:
    """Rename a channel; its deployment key and releases stay, so clients notice nothing."""
    out = ApiClient().call("PATCH", f"/api/v1/apps/{app}/channels/{name}", json_body={"name": new_name})
    emit_json(out) if as_json else click.echo(f"renamed channel {name} of {app} to {out['name']}", err=True)


@channels_group.command("delete")
@click.argument("name")
@click.option("--app", required=True, help="App name.")
@yes_option
@json_option
def channels_delete(name: str, app: str, yes: bool, as_json: bool) -> None:
    """Delete a channel that has no releases; its deployment key stops working."""
    confirm(f"Delete channel {name!r} of app {app!r}? Its deployment key stops working.", yes)
    out = ApiClient().call("DELETE", f"/api/v1/apps/{app}/channels/{name}")
    emit_json(out) if as_json else click.echo(f"deleted channel {name} of {app}", err=True)


@packages_group.command("delete")
@click.argument("package_id")
@click.argument("version")
@click.option("--app", required=True, help="App name.")
@click.option("--kind", type=KIND, help="Needed only when the id exists as several kinds.")
@yes_option
@json_option
def packages_delete(
    package_id: str, version: str, app: str, kind: str | None, yes: bool, as_json: bool
) -> None:
    """Delete a package version that was never released (a mistaken upload)."""
    confirm(f"Delete {package_id} {version} of app {app!r}?", yes)
    out = ApiClient().call("DELETE", f"/api/v1/apps/{app}/packages/{kind or 'any'}/{package_id}/{version}")
    if as_json:
        emit_json(out)
        return
    click.echo(f"deleted {out['kind']} {out['id']} {out['version']}; `mpaas gc` frees its storage", err=True)
