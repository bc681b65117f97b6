"""Users' accounts in the ledger: opened on first use, with the class and cap of their tier.

A full customer holds a Class I account; an e-account holder the class set by
``MPAAS_BANKING_E_ACCOUNT_CLASS`` (``II`` by default) until an operator changes it.
User accounts may never go negative; a Class III account's balance is capped.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.banking.ledger.errors import AccountNotFound
from mpaas.banking.ledger.models import LedgerAccount
from mpaas.banking.ledger.service import Ledger, Move, upsert_insert
from mpaas.banking.models import BankUser
from mpaas.banking.transfers.limits import Limits
from mpaas.banking.users.sessions import at
from mpaas.storage.db import Database, utcnow

CURRENCY = "CNY"
A = LedgerAccount
USER_PREFIX = "user:"


def user_code(user: BankUser) -> str:
    return USER_PREFIX + user.public_id


class Accounts:
    def __init__(self, db: Database, ledger: Ledger, limits: Limits, e_account_class: str) -> None:
        self.db, self.ledger, self.limits, self.e_account_class = db, ledger, limits, e_account_class

    def class_for(self, user: BankUser) -> str:
        return "I" if user.tier == "full" else self.e_account_class

    async def of_user(self, user: BankUser) -> LedgerAccount:
        """The user's account, opened now if it does not exist yet."""
        async with self.db.read() as s:
            found = await self.ledger.account(s, user_code(user))
        if found is not None:
            return found
        klass = self.class_for(user)
        async with self.db.write() as s:
            insert = upsert_insert(s)
            values = {
                "code": user_code(user),
                "kind": "user",
                "currency": CURRENCY,
                "user_pk": user.id,
                "account_class": klass,
                "no_negative": True,
                "balance_cap": self.limits.of(klass).balance_cap,
                "debits_pending": 0,
                "debits_posted": 0,
                "credits_pending": 0,
                "credits_posted": 0,
                "created_at": utcnow(),
            }
            await (await s.connection()).execute(
                insert(LedgerAccount).values(**values).on_conflict_do_nothing()
            )
        async with self.db.read() as s:
            created = await self.ledger.account(s, user_code(user))
        assert created is not None
        return created

    async def of_public_id(self, app_id: int, public_id: str) -> tuple[BankUser, LedgerAccount]:
        async with self.db.read() as s:
            user, account = await self.lookup_public(s, app_id, public_id)
        return user, account if account is not None else await self.of_user(user)

    async def lookup(self, s: AsyncSession, user: BankUser) -> LedgerAccount | None:
        """The user's account if it is open, read in the caller's session."""
        return await self.ledger.account(s, user_code(user))

    async def lookup_public(
        self, s: AsyncSession, app_id: int, public_id: str
    ) -> tuple[BankUser, LedgerAccount | None]:
        """A holder by public id and their account if open, in one query in the caller's session
        (opening an account needs a connection of its own: see :meth:`of_user`)."""
        query = (
            select(BankUser, LedgerAccount)
            .join(A, col(A.code) == USER_PREFIX + col(BankUser.public_id), isouter=True)
            .where(BankUser.app_id == app_id, BankUser.public_id == public_id)
        )
        found = (await s.exec(query)).first()
        if found is None or found[0].tier in ("visitor", "registered"):
            raise AccountNotFound("no e-account holder with this user id")
        return found[0], found[1]

    async def set_class(self, user: BankUser, account_class: str) -> LedgerAccount:
        """An operator's change of class; the cap follows the class (the balance is not moved)."""
        account = await self.of_user(user)
        async with self.db.write() as s:
            await s.exec(
                update(LedgerAccount)
                .where(col(LedgerAccount.id) == account.id)
                .values(account_class=account_class, balance_cap=self.limits.of(account_class).balance_cap)
            )
        return await self.of_user(user)

    async def fund(self, user: BankUser, amount: int, transfer_id: str, now: float) -> None:
        """Money in from the bound card (settlement → user): for operators, sandboxes and tests."""
        account = await self.of_user(user)
        async with self.db.write() as s:
            settlement = await self.ledger.bank_account(s, "settlement", account.currency)
            assert settlement.id is not None and account.id is not None
            move = Move(transfer_id, settlement.id, account.id, amount, account.currency, kind="top_up")
            await self.ledger.create(s, [move], at(now))
