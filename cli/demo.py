"""`mpaas demo`: the server on the embedded default, with a sample app to try things on."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import click

from mpaas.cli.config import config_path, load_target, save_target
from mpaas.cli.operator import load_settings, migrate, prepare_data_dir, serve, settings_options
from mpaas.identity.audit import Actor
from mpaas.settings import Settings

SAMPLE_APP = "superapp"


async def _seed(settings: Settings) -> tuple[str, list[tuple[str, str]]]:
    from mpaas.analytics.demo.seed import save_journeys
    from mpaas.errors import NotFound, Unauthorized
    from mpaas.identity import tenancy
    from mpaas.identity.tokens import authenticate, create_token
    from mpaas.storage.db import Database

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
            app = await tenancy.get_app(db, SAMPLE_APP)
        except NotFound:
            app, _channels = await tenancy.create_app(db, actor, SAMPLE_APP, ["ios", "android"])
            await _sample_release(settings, db, app, actor)
        channels = await tenancy.list_channels(db, SAMPLE_APP)
        await save_journeys(db, actor, SAMPLE_APP)
        return token, [(c.name, c.deployment_key) for c in channels]
    finally:
        await db.close()


def _seed_analytics(settings: Settings, users: int, seed: int) -> bool:
    """Start writing the demo's events for the sample app in a thread (the server starts
    meanwhile; its loader takes the store when the thread is done). False if not seeding."""
    import threading
    from datetime import UTC, datetime

    from mpaas.analytics.demo.generator import DemoSpec
    from mpaas.analytics.demo.seed import claim_store, seed_events

    lock = claim_store(settings) if users > 0 else None
    if lock is None:
        return False
    spec = DemoSpec(end=datetime.now(UTC), app=SAMPLE_APP, users=users, seed=seed)
    threading.Thread(
        target=seed_events, args=(settings, spec, lock), name="mpaas-demo-seed", daemon=True
    ).start()
    return True


SAMPLE_FILES = {
    "index.html": b'<!doctype html><title>Transfer</title><script src="app.3f2a1c.js"></script>',
    "app.3f2a1c.js": b"document.title = 'Transfer 1.0.0';\n",
    "style.css": b"body { font-family: sans-serif }\n",
}


async def _sample_release(settings: Settings, db: Any, app: Any, actor: Actor) -> None:
    """Publish a tiny offline package and release it on staging, through the real services."""
    import io
    import zipfile

    from mpaas.packages.intake.uploads import Uploads
    from mpaas.packages.releases.service import ReleaseService
    from mpaas.packages.releases.views import ReleaseSpec
    from mpaas.packages.service import PackageService
    from mpaas.packages.spec import PublishSpec
    from mpaas.storage.blobs import make_blob_store

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in SAMPLE_FILES.items():
            zf.writestr(name, data)
    data = buf.getvalue()

    async def chunks() -> Any:
        yield data

    uploads = Uploads(db, settings.uploads_dir, max_size=len(data), max_chunk=len(data))
    packages = PackageService(db, make_blob_store(settings), uploads, settings.tmp_dir)
    upload = await uploads.create(app, actor.name, len(data), None)
    await uploads.append(app, upload.id, 0, chunks())
    spec = PublishSpec(kind="offline", package_id="transfer", version="1.0.0", description="demo package")
    await packages.publish(app, actor, upload.id, spec)
    await ReleaseService(db, packages).create(app, actor, "staging", ReleaseSpec("transfer", "1.0.0"))


def _console_password(settings: Settings) -> str | None:
    """The demo's console account ``admin``: created once, its password kept in the data
    directory (0600) so that every start of the demo can show it. None when an operator
    already made console accounts here and the demo did not."""
    from mpaas.cli.operator import bootstrap_console_admin

    saved = settings.data_dir / "demo-console-password"
    if saved.exists():
        return saved.read_text().strip()
    password = asyncio.run(bootstrap_console_admin(settings, None))
    if password is not None:
        fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password)
    return password


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
@click.option(
    "--analytics-users",
    type=click.IntRange(0, 1_000_000),
    default=2000,
    show_default=True,
    help="Demo users whose 30 days of events seed the reports (0: none); only into an empty store.",
)
@click.option("--analytics-seed", type=int, default=7, show_default=True, help="The demo generator's seed.")
def demo_cmd(
    overrides: dict[str, Any], host: str | None, port: int | None, analytics_users: int, analytics_seed: int
) -> None:
    """Start the server on the embedded default (SQLite, local blobs) with a sample app."""
    settings = load_settings(overrides | {"host": host, "port": port})
    prepare_data_dir(settings)
    migrate(settings)
    token, channels = asyncio.run(_seed(settings))
    seeding = _seed_analytics(settings, analytics_users, analytics_seed)
    console_password = _console_password(settings)
    server = f"http://{settings.host}:{settings.port}"
    login_note = _login_cli(server, token)

    def banner() -> None:
        lines = [
            "",
            f"mpaas demo is running at {server}  (data in {settings.data_dir.resolve()})",
            f"  health:   curl {server}/healthz",
            f"  API doc:  curl {server}/api/openapi.json",
            *(
                [f"  console:  {server}/console/  (user admin, password {console_password})"]
                if console_password
                else [f"  console:  {server}/console/  (sign in with your console account)"]
            ),
            f"  sample app {SAMPLE_APP!r}; channels and their deployment keys:",
            *(f"    {name:<12} {key}" for name, key in channels),
            f"  {login_note}; in another terminal try:",
            "    mpaas apps list",
            f"    mpaas channels list --app {SAMPLE_APP}",
            "    mpaas tokens create --role release-manager",
            "    mpaas packages list --app superapp",
            "    mpaas releases list --app superapp",
            *(
                [
                    f"  analytics: demo events of {analytics_users:,} users load in the background (once per",
                    "  data directory); the 12 core journeys are saved funnels; try:",
                    f"    mpaas analytics dau --app {SAMPLE_APP} --last-days 14",
                    f"    mpaas analytics saved run journey.transfer --app {SAMPLE_APP}",
                    f"    mpaas analytics report adoption --app {SAMPLE_APP} --param package_id=transfer",
                ]
                if seeding
                else []
            ),
            "  and ask for updates as a phone on staging would:",
            f"    curl -s {server}/client/v1/updates -H 'X-Deployment-Key: {dict(channels)['staging']}' "
            '-d \'{"device_id": "demo-phone", "os": "android", "app_version": "5.0.0", '
            '"packages": [{"kind": "offline", "id": "transfer", "hash": null}]}\'',
            "Press Ctrl+C to stop.",
        ]
        click.echo("\n".join(lines), err=True)

    serve(settings, banner=banner)
