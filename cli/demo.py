"""`mpaas demo`: the server on the embedded default, with a sample app to try things on."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import click

from mpaas.audit import Actor
from mpaas.cli.config import config_path, load_target, save_target
from mpaas.cli.operator import load_settings, migrate, prepare_data_dir, serve, settings_options
from mpaas.settings import Settings

SAMPLE_APP = "superapp"


async def _seed(settings: Settings) -> tuple[str, list[tuple[str, str]]]:
    from mpaas import tenancy
    from mpaas.auth import authenticate, create_token
    from mpaas.db import Database
    from mpaas.errors import NotFound, Unauthorized

    db = Database(settings)
    actor = Actor("cli:demo")
    token_file = settings.data_dir / "demo-token"
    try:
        token = token_file.read_text().strip() if token_file.exists() else ""
        try:
            await authenticate(db, f"Bearer {token}")
        except Unauthorized:
            _row, token = await create_token(db, actor, name="demo", role="admin")
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(token)
        try:
            await tenancy.get_app(db, SAMPLE_APP)
        except NotFound:
            await tenancy.create_app(db, actor, SAMPLE_APP, ["ios", "android"])
        channels = await tenancy.list_channels(db, SAMPLE_APP)
        return token, [(c.name, c.deployment_key) for c in channels]
    finally:
        await db.close()


def _login_cli(server: str, token: str) -> str:
    """Point the CLI at the demo unless that would clobber a login to another server."""
    current = load_target()
    if not config_path().exists() or current.server == server:
        save_target(server, token)
        return "the mpaas CLI is logged in to this server"
    token_file = Path(".mpaas") / "demo-token"
    return f"to use the CLI here: export MPAAS_SERVER={server} MPAAS_TOKEN=$(cat {token_file})"


@click.command("demo")
@settings_options
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8080).")
def demo_cmd(overrides: dict[str, Any], host: str | None, port: int | None) -> None:
    """Start the server on the embedded default (SQLite, local blobs) with a sample app."""
    settings = load_settings(overrides | {"host": host, "port": port})
    prepare_data_dir(settings)
    migrate(settings)
    token, channels = asyncio.run(_seed(settings))
    server = f"http://{settings.host}:{settings.port}"
    login_note = _login_cli(server, token)

    def banner() -> None:
        lines = [
            "",
            f"mpaas demo is running at {server}  (data in {settings.data_dir.resolve()})",
            f"  health:   curl {server}/healthz",
            f"  API doc:  curl {server}/api/openapi.json",
            f"  sample app {SAMPLE_APP!r}; channels and their deployment keys:",
            *(f"    {name:<12} {key}" for name, key in channels),
            f"  {login_note}; in another terminal try:",
            "    mpaas apps list",
            f"    mpaas channels list --app {SAMPLE_APP}",
            "    mpaas tokens create --role release-manager",
            "Press Ctrl+C to stop.",
        ]
        click.echo("\n".join(lines), err=True)

    serve(settings, banner=banner)
