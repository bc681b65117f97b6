"""Reconciliation: recompute the ledger from its postings and list every difference.

What must hold (each failure is one :class:`Difference`):

- every posted transfer has exactly two postings, ``-amount`` and ``+amount``; a pending or
  voided transfer has none;
- all postings together sum to zero;
- each account's posted debits and credits equal the sums of its negative and positive
  postings, and its pending debits and credits equal the amounts of its pending transfers;
- an account that may not go negative is not negative, and a capped account is within its cap.

It only reads, with plain aggregate queries that run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import case, func
from sqlalchemy import select as sql_select
from sqlmodel import col, select

from mpaas.banking.ledger.models import LedgerAccount, LedgerPosting, LedgerTransfer
from mpaas.storage.db import Database

P, T, A = LedgerPosting, LedgerTransfer, LedgerAccount


@dataclass(frozen=True)
class Difference:
    check: str
    subject: str
    expected: int
    actual: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Report:
    accounts: int
    transfers: int
    postings: int
    differences: list[Difference]

    @property
    def clean(self) -> bool:
        return not self.differences


async def check_ledger(db: Database) -> Report:
    out: list[Difference] = []
    async with db.session() as s:
        conn = await s.connection()
        legs = await conn.execute(
            sql_select(
                col(T.transfer_id),
                col(T.status),
                col(T.amount),
                func.count(col(P.id)),
                func.coalesce(func.sum(P.amount), 0),
                func.coalesce(func.sum(case((col(P.amount) < 0, -col(P.amount)), else_=0)), 0),
            )
            .select_from(T)
            .outerjoin(P, col(P.transfer_pk) == col(T.id))
            .group_by(col(T.id), col(T.transfer_id), col(T.status), col(T.amount))
        )
        transfers = 0
        for transfer_id, status, amount, count, total, debited in legs.all():
            transfers += 1
            legs_wanted = 2 if status == "posted" else 0
            if count != legs_wanted:
                subject = f"transfer {transfer_id} ({status})"
                out.append(Difference("postings_per_transfer", subject, legs_wanted, count))
            if total != 0:
                out.append(Difference("transfer_sums_to_zero", f"transfer {transfer_id}", 0, int(total)))
            if status == "posted" and debited != amount:
                out.append(Difference("posted_amount", f"transfer {transfer_id}", amount, int(debited)))
        grand, postings = (
            await conn.execute(sql_select(func.coalesce(func.sum(P.amount), 0), func.count(col(P.id))))
        ).one()
        if grand != 0:
            out.append(Difference("ledger_sums_to_zero", "all postings", 0, int(grand)))
        by_account: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        sums = await conn.execute(
            sql_select(
                col(P.account_id),
                func.coalesce(func.sum(case((col(P.amount) < 0, -col(P.amount)), else_=0)), 0),
                func.coalesce(func.sum(case((col(P.amount) > 0, col(P.amount)), else_=0)), 0),
            ).group_by(col(P.account_id))
        )
        for account_id, debits, credits in sums.all():
            by_account[account_id][0:2] = [int(debits), int(credits)]
        pending = await conn.execute(
            sql_select(col(T.debit_account_id), col(T.credit_account_id), col(T.amount)).where(
                col(T.status) == "pending"
            )
        )
        for debit, credit, amount in pending.all():
            by_account[debit][2] += amount
            by_account[credit][3] += amount
        accounts = list((await s.exec(select(A).order_by(col(A.id)))).all())
    for account in accounts:
        assert account.id is not None
        want = by_account.get(account.id, [0, 0, 0, 0])
        have = [
            account.debits_posted,
            account.credits_posted,
            account.debits_pending,
            account.credits_pending,
        ]
        for name, expected, actual in zip(
            ("debits_posted", "credits_posted", "debits_pending", "credits_pending"), want, have, strict=True
        ):
            if expected != actual:
                out.append(Difference(name, f"account {account.code}", expected, actual))
        balance = account.credits_posted - account.debits_posted
        if account.no_negative and balance - account.debits_pending < 0:
            out.append(
                Difference("not_negative", f"account {account.code}", 0, balance - account.debits_pending)
            )
        if account.balance_cap is not None and balance + account.credits_pending > account.balance_cap:
            out.append(Difference("balance_cap", f"account {account.code}", account.balance_cap, balance))
    return Report(len(accounts), transfers, int(postings), out)
