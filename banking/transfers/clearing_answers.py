"""Clearing answers and the sweep: a pending inter-bank transfer posts or voids, once.

A repeated or late answer changes nothing, except a late acceptance of a voided transfer,
which is booked to the suspense account; a void gives the amount back to the limits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.banking.ledger.models import BankTransferRequest, LedgerTransfer
from mpaas.banking.ledger.service import VOIDED, Ledger, Move
from mpaas.banking.transfers.limits import Limits
from mpaas.banking.users.sessions import at
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.banking.transfers")


class ClearingAnswers:
    """The part of :class:`~mpaas.banking.transfers.service.TransferService` that settles
    pending transfers."""

    db: Database
    ledger: Ledger
    limits: Limits
    clock: Callable[[], float]

    async def on_clearing_answer(self, transfer_id: str, accepted: bool) -> str:
        """Post or void a pending transfer; a repeated or late answer changes nothing, except
        a late acceptance of a voided transfer, which is booked to the suspense account."""
        now = at(self.clock())
        async with self.db.write() as s:
            resolved = await (self.ledger.post if accepted else self.ledger.void)(s, transfer_id, now)
            if resolved is not None:
                if not accepted:
                    await self._give_back(s, resolved)
                return "posted" if accepted else "voided"
            current = await self.ledger.find(s, transfer_id)
            if not accepted or current is None or current.status != VOIDED:
                return "ignored"
            late_id = f"late:{transfer_id}"[:64]
            if await self.ledger.find(s, late_id) is not None:
                return "ignored"
            suspense = await self.ledger.bank_account(s, "suspense", current.currency)
            assert suspense.id is not None
            move = Move(
                late_id,
                suspense.id,
                current.credit_account_id,
                current.amount,
                current.currency,
                kind="late_clearing",
                memo="accepted by clearing after the transfer was voided",
            )
            await self.ledger.create(s, [move], now)
            log.warning(
                "clearing accepted a voided transfer; booked to suspense", extra={"transfer_id": transfer_id}
            )
            return "suspense"

    async def _give_back(self, s: AsyncSession, transfer: LedgerTransfer) -> None:
        row = (
            await s.exec(
                select(BankTransferRequest).where(BankTransferRequest.transfer_id == transfer.transfer_id)
            )
        ).first()
        if row is not None and row.limited and row.limit_day and row.limit_year:
            await self.limits.give_back(
                s, transfer.debit_account_id, transfer.amount, [row.limit_day, row.limit_year]
            )

    async def sweep(self) -> int:
        """Void pending transfers whose clearing answer did not come in time; returns how many."""
        async with self.db.session() as s:
            due = await self.ledger.pending_due(s, at(self.clock()))
        voided = 0
        for transfer_id in due:
            voided += await self.on_clearing_answer(transfer_id, False) == "voided"
        return voided
