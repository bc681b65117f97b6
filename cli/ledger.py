"""`mpaas ledger`: operator commands on the ledger, run on the server host against the database.

``check`` recomputes every account and transfer from the immutable postings and exits 1
when anything differs; ``accounts`` lists accounts with their balances.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
from sqlmodel import col, select

from mpaas.cli.errors import CliError
from mpaas.cli.operator import load_settings, settings_options
from mpaas.cli.output import emit_json, emit_table, json_option
from mpaas.settings import Settings


@click.group("ledger")
def ledger_group() -> None:
    """Reconcile and inspect the banking ledger (reads MPAAS_DATABASE_URL)."""


def _open(overrides: dict[str, Any]) -> Settings:
    settings = load_settings(overrides)
    if settings.is_sqlite:
        path = settings.database_url.split(":///", 1)[-1]
        if not path or not Path(path).is_file():
            raise CliError(f"no database at {path}: set MPAAS_DATABASE_URL or --data-dir", exit_code=2)
    return settings


async def _check(settings: Settings) -> Any:
    from mpaas.banking.ledger.check import check_ledger
    from mpaas.storage.db import Database

    db = Database(settings)
    try:
        return await check_ledger(db)
    finally:
        await db.close()


@ledger_group.command("check")
@settings_options
@json_option
def check_cmd(overrides: dict[str, Any], as_json: bool) -> None:
    """Check that postings balance per transfer and overall, and every account matches its postings."""
    try:
        report = asyncio.run(_check(_open(overrides)))
    except CliError:
        raise
    except Exception as exc:
        raise CliError(f"ledger check failed: {type(exc).__name__}".splitlines()[0]) from None
    rows = [d.to_dict() for d in report.differences]
    if as_json:
        emit_json(
            {
                "clean": report.clean,
                "accounts": report.accounts,
                "transfers": report.transfers,
                "postings": report.postings,
                "differences": rows,
            }
        )
    elif rows:
        emit_table(rows, ["check", "subject", "expected", "actual"])
    else:
        counts = f"{report.accounts} accounts, {report.transfers} transfers, {report.postings} postings"
        click.echo(f"ledger clean: {counts}")
    if not report.clean:
        raise CliError(f"ledger check: {len(rows)} difference(s)")


async def _accounts(settings: Settings, kind: str | None, limit: int) -> list[dict[str, Any]]:
    from mpaas.banking.ledger.models import LedgerAccount
    from mpaas.storage.db import Database

    db = Database(settings)
    try:
        async with db.session() as s:
            query = select(LedgerAccount).order_by(col(LedgerAccount.id)).limit(limit)
            if kind:
                query = query.where(LedgerAccount.kind == kind)
            rows = (await s.exec(query)).all()
    finally:
        await db.close()
    return [
        {
            "code": a.code,
            "kind": a.kind,
            "class": a.account_class,
            "currency": a.currency,
            "balance": a.credits_posted - a.debits_posted,
            "pending_out": a.debits_pending,
            "pending_in": a.credits_pending,
        }
        for a in rows
    ]


@ledger_group.command("accounts")
@settings_options
@click.option("--kind", type=click.Choice(["user", "settlement", "suspense", "marketing"]))
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@json_option
def accounts_cmd(overrides: dict[str, Any], kind: str | None, limit: int, as_json: bool) -> None:
    """List accounts with their balances in fen (credit minus debit, posted)."""
    rows = asyncio.run(_accounts(_open(overrides), kind, limit))
    if as_json:
        emit_json(rows)
    else:
        emit_table(rows, ["code", "kind", "class", "currency", "balance", "pending_out", "pending_in"])
