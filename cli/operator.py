"""Operator commands: the only ones that touch the data directory directly."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from sqlmodel import select

from mpaas.cli.errors import CliError
from mpaas.cli.output import emit_json, emit_record, json_option
from mpaas.errors import ConfigError
from mpaas.identity.audit import Actor
from mpaas.settings import Settings


def settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--data-dir and --database-url on top of the MPAAS_* environment."""

    @click.option("--data-dir", type=click.Path(path_type=Path), help="Data directory [env MPAAS_DATA_DIR].")
    @click.option("--database-url", help="Database URL [env MPAAS_DATABASE_URL].")
    @functools.wraps(fn)
    def wrapper(*args: Any, data_dir: Path | None, database_url: str | None, **kw: Any) -> Any:
        return fn(*args, overrides={"data_dir": data_dir, "database_url": database_url}, **kw)

    return wrapper


def load_settings(overrides: dict[str, Any]) -> Settings:
    try:
        return Settings.from_env(overrides=overrides)
    except ConfigError as exc:
        raise CliError(str(exc), exit_code=2) from None


def prepare_data_dir(settings: Settings) -> None:
    """Create the data directory: `mpaas init` (and `mpaas demo`) only; others use open_data_dir."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for sub in (settings.tmp_dir, settings.keys_dir):
        sub.mkdir(parents=True, exist_ok=True, mode=0o700)


def open_data_dir(settings: Settings) -> Path:
    """The existing data directory (absolute); refuse to create one where none was initialised.

    Run in the wrong directory, an operator command would otherwise make a fresh
    ``./.mpaas`` with an empty database and act on that instead of the real one.
    """
    path = settings.data_dir.absolute()
    if not path.is_dir():
        raise CliError(
            f"no mpaas data directory at {path}: pass --data-dir or set MPAAS_DATA_DIR, "
            "or create one with `mpaas init`",
            exit_code=2,
        )
    for sub in (settings.tmp_dir, settings.keys_dir):
        sub.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def migrate(settings: Settings) -> None:
    from mpaas.storage.migrate import upgrade

    try:
        upgrade(settings)
    except Exception as exc:
        raise CliError(f"database upgrade failed: {type(exc).__name__}: {exc}".splitlines()[0]) from None


async def _bootstrap_admin(settings: Settings, force: bool) -> str | None:
    from mpaas.identity.models import ApiToken
    from mpaas.identity.tokens import create_token
    from mpaas.storage.db import Database

    db = Database(settings)
    try:
        async with db.session() as s:
            existing = (
                await s.exec(select(ApiToken).where(ApiToken.role == "admin", ApiToken.revoked_at == None))  # noqa: E711
            ).first()
        if existing is not None and not force:
            return None
        _row, secret = await create_token(db, Actor("cli:init"), name="admin", role="admin")
        return secret
    finally:
        await db.close()


async def bootstrap_console_admin(settings: Settings, password: str | None) -> str | None:
    """Create the console account ``admin`` when no console account exists yet.

    Returns its password when this call created it (generated unless given)."""
    import secrets

    from mpaas.console.accounts import create_account, list_accounts
    from mpaas.console.passwords import Passwords
    from mpaas.storage.db import Database

    db = Database(settings)
    try:
        if await list_accounts(db):
            return None
        password = password or secrets.token_urlsafe(15)
        passwords = Passwords(settings.console_argon2_memory_kib)
        actor = Actor("cli:init")
        await create_account(db, passwords, actor, username="admin", role="admin", password=password)
        return password
    finally:
        await db.close()


@click.command("init")
@settings_options
@click.option(
    "--new-admin-token", is_flag=True, help="Mint another admin token even if one exists (recovery)."
)
@click.option(
    "--admin-password-stdin",
    is_flag=True,
    help="Read the console account admin's password from stdin instead of generating one.",
)
@json_option
def init_cmd(
    overrides: dict[str, Any], new_admin_token: bool, admin_password_stdin: bool, as_json: bool
) -> None:
    """Create the data directory and database; print the first admin token and the
    web console's admin password, once each (the token on stdout, the password on stderr)."""
    from mpaas.console.passwords import check_password
    from mpaas.errors import MpaasError

    given = sys.stdin.readline().rstrip("\r\n") if admin_password_stdin else None
    settings = load_settings(overrides)
    try:
        if given is not None:
            check_password(given)
        prepare_data_dir(settings)
        migrate(settings)
        token = asyncio.run(_bootstrap_admin(settings, new_admin_token))
        console_password = asyncio.run(bootstrap_console_admin(settings, given))
    except MpaasError as exc:
        raise CliError(exc.message, exit_code=2 if given is not None else 1) from None
    if as_json:
        shown = console_password if given is None else None
        console_user = "admin" if console_password else None
        emit_json(
            {
                "data_dir": str(settings.data_dir),
                "token": token,
                "console_user": console_user,
                "console_password": shown,
            }
        )
        return
    if console_password is not None and given is None:
        click.echo(
            f"web console: user admin, password {console_password} (shown once; sign in at /console/)",
            err=True,
        )
    elif console_password is not None:
        click.echo("web console: created user admin with the password from stdin", err=True)
    if token is None:
        click.echo(
            f"already initialised: {settings.data_dir} has an admin token "
            "(use `mpaas tokens create`, or `mpaas init --new-admin-token` to recover)",
            err=True,
        )
        return
    click.echo(f"initialised {settings.data_dir}; admin token (shown once, store it safely):", err=True)
    click.echo(token)


@click.group("db")
def db_group() -> None:
    """Database schema commands."""


@db_group.command("upgrade")
@settings_options
def db_upgrade(overrides: dict[str, Any]) -> None:
    """Apply all pending migrations (SQLite: in an initialised data directory)."""
    settings = load_settings(overrides)
    if settings.is_sqlite:
        click.echo(f"data directory: {open_data_dir(settings)}", err=True)
    migrate(settings)
    click.echo("database is up to date", err=True)


@click.group("config")
def config_group() -> None:
    """Show the effective configuration."""


@config_group.command("show")
@settings_options
@json_option
def config_show(overrides: dict[str, Any], as_json: bool) -> None:
    """Print the effective settings (secrets masked) and the server and user the CLI uses."""
    from mpaas.cli.config import cli_identity

    shown = load_settings(overrides).display() | cli_identity()
    emit_json(shown) if as_json else emit_record(shown)


async def settle_gc(_app: Any) -> None:
    """After start-up: move what start-up made out of the collector's sight, and collect less often.

    Everything imported and built at start-up lives as long as the process; without this
    each full collection walks all of it (about 100 ms stalls under load, issue 17). Run
    last in ``on_startup``, after every domain has started.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def serve(settings: Settings, *, banner: Callable[[], None] | None = None, reuse_port: bool = False) -> None:
    """Run one server process; ``reuse_port`` only for the workers of ``--workers N``.

    Without it a second server on a taken port fails loudly instead of silently
    sharing the port (and its clients) with whatever process holds it.
    """
    from aiohttp import web

    from mpaas.app import create_app
    from mpaas.logs import setup_logging
    from mpaas.web.protocol import run

    setup_logging(settings.log_level, as_json=settings.log_json)
    if not settings.metrics_token:
        logging.getLogger("mpaas").warning(
            "GET /metrics is public: anyone who reaches %s:%s can read it "
            "(set MPAAS_METRICS_TOKEN to require a bearer token)",
            settings.host,
            settings.port,
        )
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional on some platforms
        pass
    app = create_app(settings)
    if banner is not None:

        async def _on_startup(_app: web.Application) -> None:
            banner()

        app.on_startup.append(_on_startup)
    app.on_startup.append(settle_gc)
    # Not web.run_app: the same runner, but errors aiohttp answers before routing (an
    # over-long header) are JSON and never log request bytes (mpaas.web.protocol).
    run(app, settings.host, settings.port, reuse_port=reuse_port)


@click.command("server")
@settings_options
@click.option("--host", help="Address to listen on [env MPAAS_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port [env MPAAS_PORT, default 8080].")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Server processes sharing the port (SO_REUSEPORT).",
)
def server_cmd(overrides: dict[str, Any], host: str | None, port: int | None, workers: int) -> None:
    """Run the mpaas HTTP server."""
    settings = load_settings(overrides | {"host": host, "port": port})
    if settings.is_sqlite:
        prepare_data_dir(settings)
    click.echo(
        f"mpaas listening on http://{settings.host}:{settings.port} "
        f"(pid {os.getpid()}; data directory {settings.data_dir.absolute()})",
        err=True,
    )
    if workers == 1:
        serve(settings)
    else:
        serve_workers(settings, workers)


def serve_workers(settings: Settings, workers: int) -> None:
    """Run ``workers`` server processes on one port; the kernel spreads connections (SO_REUSEPORT).

    The schema is upgraded once here, not by each worker. Workers share nothing in
    memory: each polls the database for release changes (MPAAS_RELEASE_POLL_SECONDS).
    """
    import multiprocessing
    import signal

    if settings.should_auto_migrate:
        migrate(settings)
    settings = settings.with_overrides(auto_migrate=False)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=serve, args=(settings,), kwargs={"reuse_port": True}, name=f"mpaas-worker-{i}")
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()

    def stop(_signum: int, _frame: Any) -> None:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for proc in procs:
        proc.join()
