"""Console accounts: create, list, disable, change role or password; each change is audited.

A disabled account's sessions are ended at once; a role change applies to the next
request of every session, since each request reads the account again.
"""

from __future__ import annotations

import re

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.console.errors import AccountNotFound
from mpaas.console.models import ConsoleAccount, ConsoleSession
from mpaas.console.passwords import Passwords
from mpaas.errors import Conflict, ValidationError
from mpaas.identity.audit import Actor, record
from mpaas.identity.tokens import check_role
from mpaas.storage.db import Database, utcnow

USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def check_username(name: str) -> str:
    if not USERNAME_RE.fullmatch(name):
        raise ValidationError(
            f"user name {name[:80]!r} must be 1-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def target(name: str) -> str:
    return f"console_account:{name}"


async def create_account(
    db: Database, passwords: Passwords, actor: Actor, *, username: str, role: str, password: str
) -> ConsoleAccount:
    check_username(username)
    check_role(role)
    digest = await passwords.hash(password)
    async with db.write() as s:
        existing = (await s.exec(select(ConsoleAccount).where(ConsoleAccount.username == username))).first()
        if existing is not None:
            raise Conflict(f"console account {username!r} already exists", code="account_exists")
        row = ConsoleAccount(username=username, role=role, password_hash=digest, created_by=actor.name)
        s.add(row)
        record(s, actor, "console_account.create", target(username), detail={"role": role})
    return row


async def list_accounts(db: Database) -> list[ConsoleAccount]:
    async with db.session() as s:
        return list((await s.exec(select(ConsoleAccount).order_by(col(ConsoleAccount.id)))).all())


async def has_admin(db: Database) -> bool:
    query = select(ConsoleAccount.id).where(
        ConsoleAccount.role == "admin",
        col(ConsoleAccount.disabled_at).is_(None),
    )
    async with db.session() as s:
        return (await s.exec(query)).first() is not None


async def _get(s: AsyncSession, username: str) -> ConsoleAccount:
    row = (await s.exec(select(ConsoleAccount).where(ConsoleAccount.username == username))).first()
    if row is None:
        raise AccountNotFound(f"no console account {username!r}; see `mpaas users list`")
    return row


async def disable_account(db: Database, actor: Actor, username: str) -> ConsoleAccount:
    """Disable an account and end its sessions (idempotent)."""
    async with db.write() as s:
        row = await _get(s, username)
        if row.disabled_at is None:
            row.disabled_at = utcnow()
            s.add(row)
            await s.exec(delete(ConsoleSession).where(col(ConsoleSession.account_id) == row.id))
            record(s, actor, "console_account.disable", target(username))
        return row


async def enable_account(db: Database, actor: Actor, username: str) -> ConsoleAccount:
    async with db.write() as s:
        row = await _get(s, username)
        if row.disabled_at is not None:
            row.disabled_at = None
            s.add(row)
            record(s, actor, "console_account.enable", target(username))
        return row


async def set_role(db: Database, actor: Actor, username: str, role: str) -> ConsoleAccount:
    check_role(role)
    async with db.write() as s:
        row = await _get(s, username)
        if row.role != role:
            detail = {"from": row.role, "to": role}
            row.role = role
            s.add(row)
            record(s, actor, "console_account.set_role", target(username), detail=detail)
        return row


async def set_password(
    db: Database, passwords: Passwords, actor: Actor, username: str, password: str
) -> ConsoleAccount:
    """A new password ends every session of the account."""
    digest = await passwords.hash(password)
    async with db.write() as s:
        row = await _get(s, username)
        row.password_hash = digest
        row.password_changed_at = utcnow()
        s.add(row)
        await s.exec(delete(ConsoleSession).where(col(ConsoleSession.account_id) == row.id))
        record(s, actor, "console_account.set_password", target(username))
        return row


def account_view(row: ConsoleAccount) -> dict[str, object]:
    return {
        "username": row.username,
        "role": row.role,
        "disabled": row.disabled_at is not None,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "last_sign_in_at": row.last_sign_in_at,
    }
