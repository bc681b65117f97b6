"""What a user reads: one transfer, the balance with the limits left, and the statement.

The statement pages by cursor, newest first: the cursor is the id of the last posting
on the page, so a page never repeats or skips a line while new postings arrive.
"""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import col, select

from mpaas.banking.ledger.errors import TransferNotFound
from mpaas.banking.ledger.models import BankLimitUsage, LedgerPosting, LedgerTransfer
from mpaas.banking.ledger.service import available_of, balance_of
from mpaas.banking.models import BankUser
from mpaas.banking.transfers.plan import iso
from mpaas.banking.transfers.requests import AWAITING, REFUSED
from mpaas.banking.transfers.service import TransferService
from mpaas.errors import ValidationError

CURSOR_RE = re.compile(r"p[0-9]{1,18}")


async def get_transfer(service: TransferService, user: BankUser, transfer_id: str) -> dict[str, Any]:
    assert user.id is not None
    row = await service.requests.by_transfer(user.id, transfer_id)
    if row is None:
        raise TransferNotFound("no transfer with this id")
    if row.status == AWAITING:
        return {"transfer_id": transfer_id, "status": AWAITING, "decision_id": row.decision_id}
    if row.status == REFUSED:
        return {"transfer_id": transfer_id, "status": "refused", "error": row.response}
    async with service.db.session() as s:
        current = await service.ledger.find(s, transfer_id)
    out = dict(row.response)
    if current is not None:
        out["status"] = current.status
        out["resolved_at"] = iso(current.resolved_at) if current.resolved_at else None
    return out


async def balance(service: TransferService, user: BankUser) -> dict[str, Any]:
    account = await service.accounts.of_user(user)
    rule = service.limits.of(account.account_class)
    when = service.limits.periods(service.clock())
    async with service.db.session() as s:
        rows = await s.exec(
            select(BankLimitUsage).where(
                BankLimitUsage.account_id == account.id, col(BankLimitUsage.period).in_([when.day, when.year])
            )
        )
        used = {r.period: r.used for r in rows.all()}
    return {
        "account_class": account.account_class,
        "currency": account.currency,
        "balance": balance_of(account),
        "available": available_of(account),
        "pending_out": account.debits_pending,
        "pending_in": account.credits_pending,
        "balance_cap": account.balance_cap,
        "limits": {
            "day": {"period": when.day, "used": used.get(when.day, 0), "limit": rule.day_out},
            "year": {"period": when.year, "used": used.get(when.year, 0), "limit": rule.year_out},
            "bound_account_exempt": rule.bound_exempt,
        },
    }


async def statement(
    service: TransferService, user: BankUser, cursor: str | None, limit: int
) -> dict[str, Any]:
    if cursor is not None and CURSOR_RE.fullmatch(cursor) is None:
        raise ValidationError("cursor must be the next_cursor of a previous page")
    account = await service.accounts.of_user(user)
    query = (
        select(LedgerPosting, LedgerTransfer)
        .join(LedgerTransfer, col(LedgerTransfer.id) == col(LedgerPosting.transfer_pk))
        .where(LedgerPosting.account_id == account.id)
        .order_by(col(LedgerPosting.id).desc())
        .limit(limit + 1)
    )
    if cursor is not None:
        query = query.where(col(LedgerPosting.id) < int(cursor[1:]))
    async with service.db.session() as s:
        rows = list((await s.exec(query)).all())
    page = rows[:limit]
    lines = [
        {
            "transfer_id": transfer.transfer_id,
            "amount": posting.amount,
            "currency": transfer.currency,
            "kind": transfer.kind,
            "memo": transfer.memo,
            "posted_at": iso(posting.posted_at),
        }
        for posting, transfer in page
    ]
    more = len(rows) > limit and page
    return {"lines": lines, "next_cursor": f"p{page[-1][0].id}" if more else None}
