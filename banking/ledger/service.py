"""The ledger: accounts, and transfers that move money between them, inside a caller's transaction.

Every method that writes takes the caller's session, so a transfer, its limit usage and
the request that asked for it commit together or not at all. The rules that keep money
safe are conditions of the UPDATE that moves it (``... WHERE credits - debits >= :amount``)
and the rowcount says whether it held: two transactions cannot both pass on the same
funds, on SQLite (one writer at a time) or PostgreSQL (the UPDATE locks the row, and a
waiting UPDATE re-checks its condition on the committed row). Accounts are updated in
id order so two opposite transfers cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, Update, case, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.banking.ledger.errors import (
    AccountNotFound,
    BalanceCapExceeded,
    CurrencyMismatch,
    InsufficientFunds,
    TransferExists,
)
from mpaas.banking.ledger.models import LedgerAccount, LedgerPosting, LedgerTransfer
from mpaas.storage.db import utcnow

BANK_KINDS = ("settlement", "suspense", "marketing")
PENDING, POSTED, VOIDED = "pending", "posted", "voided"
A = LedgerAccount
BATCH = 2_000  # moves a statement: 12 columns × 2,000 rows stays under 32,767 parameters


def upsert_insert(s: AsyncSession) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_nothing`` on SQLite and PostgreSQL alike."""
    return postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert


def bank_code(kind: str, currency: str) -> str:
    return f"bank:{kind}:{currency}"


@dataclass(frozen=True)
class Move:
    """One transfer to make: TigerBeetle's fields, with our client-supplied string id."""

    transfer_id: str
    debit: int
    credit: int
    amount: int
    currency: str
    pending: bool = False
    timeout_at: datetime | None = None
    kind: str = "internal"
    memo: str = ""


def _same(row: LedgerTransfer, move: Move) -> bool:
    return (row.debit_account_id, row.credit_account_id, row.amount, row.currency) == (
        move.debit,
        move.credit,
        move.amount,
        move.currency,
    )


async def rowcount(s: AsyncSession, stmt: Update) -> int:
    """Run a conditional UPDATE in the session's transaction; how many rows it changed."""
    conn = await s.connection()
    result = await conn.execute(stmt)
    assert isinstance(result, CursorResult)
    return result.rowcount


def debit_condition(amount: int | ColumnElement[int]) -> ColumnElement[bool]:
    available = col(A.credits_posted) - col(A.debits_posted) - col(A.debits_pending)
    return (col(A.no_negative).is_(False)) | (available >= amount)


def credit_condition(amount: int | ColumnElement[int]) -> ColumnElement[bool]:
    balance = col(A.credits_posted) + col(A.credits_pending) - col(A.debits_posted)
    return col(A.balance_cap).is_(None) | (balance + amount <= col(A.balance_cap))


class Ledger:
    async def ensure_bank_accounts(self, s: AsyncSession, currency: str = "CNY") -> None:
        """The bank's own accounts for a currency; they may go negative (they are the bank's position)."""
        for kind in BANK_KINDS:
            values = {"code": bank_code(kind, currency), "kind": kind, "currency": currency}
            insert = upsert_insert(s)
            defaults = {
                "no_negative": False,
                "debits_pending": 0,
                "debits_posted": 0,
                "credits_pending": 0,
                "credits_posted": 0,
                "created_at": utcnow(),
            }
            stmt = insert(LedgerAccount).values(**values, **defaults).on_conflict_do_nothing()
            await (await s.connection()).execute(stmt)

    async def account(self, s: AsyncSession, code: str) -> LedgerAccount | None:
        return (await s.exec(select(LedgerAccount).where(LedgerAccount.code == code))).first()

    async def bank_account(self, s: AsyncSession, kind: str, currency: str) -> LedgerAccount:
        found = await self.account(s, bank_code(kind, currency))
        if found is None:
            raise AccountNotFound(f"the bank has no {kind} account in {currency}")
        return found

    async def create(self, s: AsyncSession, moves: Sequence[Move], now: datetime) -> list[LedgerTransfer]:
        """Make ``moves`` as one linked chain: all of them, or (by raising) none.

        A move whose id exists with the same fields returns the existing transfer (a
        retry); with other fields it raises :class:`TransferExists`.
        """
        chain = moves[0].transfer_id if len(moves) > 1 else None
        out: list[LedgerTransfer] = []
        for move in moves:
            made = await self._make(s, move, chain, now)
            if made is None:  # the id exists: a retry of the same transfer, or a different one
                existing = await self.find(s, move.transfer_id)
                assert existing is not None
                if not _same(existing, move):
                    raise TransferExists(f"transfer {move.transfer_id} exists with other fields")
                made = existing
            out.append(made)
        return out

    async def _make(
        self, s: AsyncSession, move: Move, chain: str | None, now: datetime
    ) -> LedgerTransfer | None:
        """Insert the transfer (None when its id exists), then move the money by conditional
        UPDATEs; a refusal raises, and the caller's transaction rolls the insert back."""
        if move.amount <= 0 or move.debit == move.credit:
            raise AccountNotFound("a transfer moves a positive amount between two accounts")
        row = LedgerTransfer(
            transfer_id=move.transfer_id,
            debit_account_id=move.debit,
            credit_account_id=move.credit,
            amount=move.amount,
            currency=move.currency,
            status=PENDING if move.pending else POSTED,
            chain=chain,
            kind=move.kind,
            memo=move.memo,
            timeout_at=move.timeout_at,
            created_at=now,
            resolved_at=None if move.pending else now,
        )
        values = row.model_dump(exclude={"id"})
        new = upsert_insert(s)(LedgerTransfer).values(**values).on_conflict_do_nothing()
        conn = await s.connection()
        row.id = (await conn.execute(new.returning(col(LedgerTransfer.id)))).scalar_one_or_none()
        if row.id is None:
            return None
        side = "pending" if move.pending else "posted"
        legs = sorted([(move.debit, "debits"), (move.credit, "credits")])
        for account_id, which in legs:
            column = getattr(A, f"{which}_{side}")
            check = debit_condition(move.amount) if which == "debits" else credit_condition(move.amount)
            stmt = (
                update(A)
                .where(col(A.id) == account_id, col(A.currency) == move.currency, check)
                .values({column: column + move.amount})
            )
            if await rowcount(s, stmt) != 1:
                await self.explain(s, account_id, which, move.currency)
        if not move.pending:
            await _insert_postings(s, row, now)
        return row

    async def create_batch(self, s: AsyncSession, moves: Sequence[Move], now: datetime) -> int:
        """Post many independent transfers in a few statements per 2,000 (top-ups, payouts,
        seed data): all of them or, by raising, none. Unlike :meth:`create`, an id that exists
        is refused (:class:`TransferExists`), not answered again. One currency per batch; the
        same conditions as one transfer, checked per account on the batch's total for it, all
        debits before any credit (an account cannot spend in a batch what the batch pays it)."""
        for start in range(0, len(moves), BATCH):
            await self._batch(s, moves[start : start + BATCH], now)
        return len(moves)

    async def _batch(self, s: AsyncSession, moves: Sequence[Move], now: datetime) -> None:
        currencies = {move.currency for move in moves}
        if len(currencies) != 1 or any(m.pending or m.amount <= 0 or m.debit == m.credit for m in moves):
            raise AccountNotFound("a batch posts positive amounts between two accounts, in one currency")
        [currency] = currencies
        conn = await s.connection()
        rows = [
            {
                "transfer_id": m.transfer_id,
                "debit_account_id": m.debit,
                "credit_account_id": m.credit,
                "amount": m.amount,
                "currency": m.currency,
                "status": POSTED,
                "chain": None,
                "kind": m.kind,
                "memo": m.memo,
                "timeout_at": None,
                "created_at": now,
                "resolved_at": now,
            }
            for m in moves
        ]
        stmt = upsert_insert(s)(LedgerTransfer).values(rows).on_conflict_do_nothing()
        made = (
            await conn.execute(stmt.returning(col(LedgerTransfer.id), col(LedgerTransfer.transfer_id)))
        ).all()
        if len(made) != len(moves):
            raise TransferExists("a transfer of this batch exists already")
        for which in ("debits", "credits"):
            totals: dict[int, int] = {}
            for m in moves:
                account_id = m.debit if which == "debits" else m.credit
                totals[account_id] = totals.get(account_id, 0) + m.amount
            amount = case(totals, value=col(A.id))
            column = getattr(A, f"{which}_posted")
            check = debit_condition(amount) if which == "debits" else credit_condition(amount)
            stmt_update = (
                update(A)
                .where(col(A.id).in_(sorted(totals)), col(A.currency) == currency, check)
                .values({column: column + amount})
            )
            if await rowcount(s, stmt_update) != len(totals):
                raise (InsufficientFunds if which == "debits" else BalanceCapExceeded)(
                    f"an account of this batch is unknown, in another currency, or cannot take its {which}"
                )
        pk = {transfer_id: id_ for id_, transfer_id in made}
        legs = [
            {"transfer_pk": pk[m.transfer_id], "account_id": a, "amount": n, "posted_at": now}
            for m in moves
            for a, n in ((m.debit, -m.amount), (m.credit, m.amount))
        ]
        await conn.execute(insert(LedgerPosting), legs)

    async def explain(self, s: AsyncSession, account_id: int, which: str, currency: str) -> None:
        """Raise why a conditional update of ``which`` (debits, credits) changed no row."""
        account = (await s.exec(select(A).where(A.id == account_id))).first()
        if account is None:
            raise AccountNotFound("no such account")
        if account.currency != currency:
            raise CurrencyMismatch(f"the account holds {account.currency}, not {currency}")
        if which == "debits":
            raise InsufficientFunds("the balance does not cover this amount")
        raise BalanceCapExceeded("the receiving account would exceed its balance cap")

    async def find(self, s: AsyncSession, transfer_id: str) -> LedgerTransfer | None:
        return (await s.exec(select(LedgerTransfer).where(LedgerTransfer.transfer_id == transfer_id))).first()

    async def post(self, s: AsyncSession, transfer_id: str, now: datetime) -> LedgerTransfer | None:
        """Post a pending transfer; None when it is not pending (posted, voided or unknown)."""
        row = await self._resolve(s, transfer_id, POSTED, now)
        if row is not None:
            await _insert_postings(s, row, now)
        return row

    async def void(self, s: AsyncSession, transfer_id: str, now: datetime) -> LedgerTransfer | None:
        """Void a pending transfer and release its reservation; None when it is not pending."""
        return await self._resolve(s, transfer_id, VOIDED, now)

    async def _resolve(
        self, s: AsyncSession, transfer_id: str, status: str, now: datetime
    ) -> LedgerTransfer | None:
        claimed = await rowcount(
            s,
            update(LedgerTransfer)
            .where(col(LedgerTransfer.transfer_id) == transfer_id, col(LedgerTransfer.status) == PENDING)
            .values(status=status, resolved_at=now),
        )
        if claimed != 1:
            return None
        row = await self.find(s, transfer_id)
        assert row is not None
        await s.refresh(row)
        legs = sorted([(row.debit_account_id, "debits"), (row.credit_account_id, "credits")])
        for account_id, which in legs:
            pending = getattr(A, f"{which}_pending")
            values = {pending: pending - row.amount}
            if status == POSTED:
                posted = getattr(A, f"{which}_posted")
                values[posted] = posted + row.amount
            await rowcount(s, update(A).where(col(A.id) == account_id).values(values))
        return row

    async def pending_due(self, s: AsyncSession, now: datetime, limit: int = 100) -> list[str]:
        rows = await s.exec(
            select(LedgerTransfer.transfer_id)
            .where(LedgerTransfer.status == PENDING, col(LedgerTransfer.timeout_at) <= now)
            .order_by(col(LedgerTransfer.timeout_at))
            .limit(limit)
        )
        return list(rows.all())


async def _insert_postings(s: AsyncSession, row: LedgerTransfer, now: datetime) -> None:
    """The two legs of a posted transfer, in one INSERT."""
    legs = [(row.debit_account_id, -row.amount), (row.credit_account_id, row.amount)]
    rows = [{"transfer_pk": row.id, "account_id": a, "amount": n, "posted_at": now} for a, n in legs]
    await (await s.connection()).execute(insert(LedgerPosting), rows)


def balance_of(account: LedgerAccount) -> int:
    return account.credits_posted - account.debits_posted


def available_of(account: LedgerAccount) -> int:
    return account.credits_posted - account.debits_posted - account.debits_pending
