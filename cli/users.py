"""`mpaas users`: web console accounts. Operator commands: they use the database directly,
so the first accounts can be made before the server runs (like `mpaas init`)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from mpaas.cli.errors import CliError
from mpaas.cli.operator import load_settings, open_data_dir, settings_options
from mpaas.cli.output import emit_json, emit_table, json_option
from mpaas.errors import MpaasError
from mpaas.identity.audit import Actor
from mpaas.identity.roles import ROLES
from mpaas.settings import Settings

T = TypeVar("T")
ACTOR = Actor("cli:users")
role_choice = click.Choice(list(ROLES))


def read_password(from_stdin: bool) -> str:
    """One line of stdin (--password-stdin), or a hidden prompt asked twice."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CliError("no password on stdin", exit_code=2)
        return line
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def run(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(db)`` on the configured database; a service error is one line, exit 1."""
    from mpaas.storage.db import Database

    if settings.is_sqlite:
        open_data_dir(settings)  # never make a fresh, empty database elsewhere

    async def go() -> T:
        db = Database(settings)
        try:
            return await action(db)
        finally:
            await db.close()

    try:
        return asyncio.run(go())
    except MpaasError as exc:
        raise CliError(exc.message) from None


def passwords(settings: Settings) -> Any:
    from mpaas.console.passwords import Passwords

    return Passwords(settings.console_argon2_memory_kib)


@click.group("users")
def users_group() -> None:
    """Web console accounts (see docs/console.md)."""


@users_group.command("create")
@click.argument("name")
@click.option("--role", required=True, type=role_choice, help="What the account may do.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin instead of a prompt.")
@settings_options
@json_option
def users_create(
    overrides: dict[str, Any], name: str, role: str, password_stdin: bool, as_json: bool
) -> None:
    """Create a console account; its password is at least 12 characters."""
    from mpaas.console.accounts import account_view, create_account

    settings = load_settings(overrides)
    password = read_password(password_stdin)
    row = run(
        settings,
        lambda db: create_account(
            db, passwords(settings), ACTOR, username=name, role=role, password=password
        ),
    )
    emit_json(account_view(row)) if as_json else click.echo(
        f"created console account {name} ({role})", err=True
    )


@users_group.command("list")
@settings_options
@json_option
def users_list(overrides: dict[str, Any], as_json: bool) -> None:
    """List console accounts (never their passwords)."""
    from mpaas.console.accounts import account_view, list_accounts

    rows = [account_view(r) for r in run(load_settings(overrides), list_accounts)]
    if as_json:
        emit_json({"items": rows})
    else:
        emit_table(rows, ["username", "role", "disabled", "created_at", "created_by", "last_sign_in_at"])


@users_group.command("disable")
@click.argument("name")
@settings_options
def users_disable(overrides: dict[str, Any], name: str) -> None:
    """Disable an account and end its sessions."""
    from mpaas.console.accounts import disable_account

    run(load_settings(overrides), lambda db: disable_account(db, ACTOR, name))
    click.echo(f"disabled console account {name}; its sessions are ended", err=True)


@users_group.command("enable")
@click.argument("name")
@settings_options
def users_enable(overrides: dict[str, Any], name: str) -> None:
    """Enable a disabled account again."""
    from mpaas.console.accounts import enable_account

    run(load_settings(overrides), lambda db: enable_account(db, ACTOR, name))
    click.echo(f"enabled console account {name}", err=True)


@users_group.command("set-role")
@click.argument("name")
@click.argument("role", type=role_choice)
@settings_options
def users_set_role(overrides: dict[str, Any], name: str, role: str) -> None:
    """Change an account's role; its open sessions get the new role on their next request."""
    from mpaas.console.accounts import set_role

    run(load_settings(overrides), lambda db: set_role(db, ACTOR, name, role))
    click.echo(f"console account {name} is now {role}", err=True)


@users_group.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin instead of a prompt.")
@settings_options
def users_set_password(overrides: dict[str, Any], name: str, password_stdin: bool) -> None:
    """Set a new password; the account's sessions are ended."""
    from mpaas.console.accounts import set_password

    settings = load_settings(overrides)
    password = read_password(password_stdin)
    run(settings, lambda db: set_password(db, passwords(settings), ACTOR, name, password))
    click.echo(f"new password set for console account {name}; its sessions are ended", err=True)
