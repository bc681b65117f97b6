"""SQL tables of the ledger and of the transfers built on it.

The model follows TigerBeetle's: an account keeps four running totals (debits and
credits, pending and posted) and its flags; a transfer moves one amount from a debit
account to a credit account and carries a client-supplied id, so a retried create can
never post twice. Postings are written once, when a transfer posts, and never changed:
each posted transfer has exactly two, ``-amount`` on the debit account and ``+amount``
on the credit account. ``mpaas ledger check`` recomputes every total from them.

Amounts are integer fen (``BigInteger``): 2**31 fen is only 21 million yuan.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from mpaas.storage.db import utcnow


def money(nullable: bool = False, default: int | None = 0) -> Any:
    return Field(default=default, sa_type=BigInteger, nullable=nullable)


class LedgerAccount(SQLModel, table=True):
    """An account: a user's e-account, or the bank's settlement, suspense or marketing account.

    ``no_negative`` is TigerBeetle's ``debits_must_not_exceed_credits``; ``balance_cap``
    bounds ``credits - debits`` (Class III accounts). Both are checked by the conditional
    UPDATE that moves the money, inside the transaction, never in Python.
    """

    __tablename__ = "ledger_accounts"

    id: int | None = Field(default=None, primary_key=True)
    #: ``user:<app>:<user public id>`` or ``bank:<kind>:<currency>``.
    code: str = Field(max_length=96, unique=True)
    kind: str = Field(max_length=16)
    currency: str = Field(max_length=3)
    user_pk: int | None = Field(default=None, foreign_key="bank_users.id", index=True)
    #: PBOC account class of a user account: ``I``, ``II`` or ``III``; None for the bank's own.
    account_class: str | None = Field(default=None, max_length=3)
    no_negative: bool = False
    balance_cap: int | None = money(nullable=True, default=None)
    debits_pending: int = money()
    debits_posted: int = money()
    credits_pending: int = money()
    credits_posted: int = money()
    created_at: datetime = Field(default_factory=utcnow)


class LedgerTransfer(SQLModel, table=True):
    """One movement of money; ``status`` goes pending → posted | voided, or is posted at once."""

    __tablename__ = "ledger_transfers"
    __table_args__ = (Index("ix_ledger_transfers_pending", "status", "timeout_at"),)

    id: int | None = Field(default=None, primary_key=True)
    #: The client-supplied id: unique, so a second create of the same id cannot post again.
    transfer_id: str = Field(max_length=64, unique=True)
    debit_account_id: int = Field(foreign_key="ledger_accounts.id", index=True)
    credit_account_id: int = Field(foreign_key="ledger_accounts.id", index=True)
    amount: int = money()
    currency: str = Field(max_length=3)
    status: str = Field(max_length=8)
    #: Transfers created together share a chain id: they post (or fail) together.
    chain: str | None = Field(default=None, max_length=64)
    kind: str = Field(default="internal", max_length=16)
    memo: str = Field(default="", max_length=140)
    timeout_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None


class LedgerPosting(SQLModel, table=True):
    """One leg of a posted transfer; never updated or deleted."""

    __tablename__ = "ledger_postings"
    __table_args__ = (Index("ix_ledger_postings_account", "account_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    transfer_pk: int = Field(foreign_key="ledger_transfers.id", index=True)
    account_id: int = Field(foreign_key="ledger_accounts.id")
    #: Signed: negative for the debit leg, positive for the credit leg.
    amount: int = money()
    posted_at: datetime = Field(default_factory=utcnow)


class BankTransferRequest(SQLModel, table=True):
    """A user's create call under an idempotency key, with the answer it got.

    The row is written in the same transaction as the ledger transfer it leads to, so a
    crash leaves either both or neither; a retry with the key then replays ``response``.
    """

    __tablename__ = "bank_transfer_requests"
    __table_args__ = (UniqueConstraint("user_pk", "idempotency_key", name="uq_bank_transfer_requests_key"),)

    id: int | None = Field(default=None, primary_key=True)
    user_pk: int = Field(foreign_key="bank_users.id")
    idempotency_key: str = Field(max_length=64)
    #: sha256 of the canonical request (operation and money-moving fields).
    request_hash: str = Field(max_length=64)
    #: The ledger transfer id this request creates (``t_`` + 24 hex, derived from user and key).
    transfer_id: str = Field(max_length=64, unique=True)
    #: ``awaiting_step_up``, ``done`` (answered 1000) or ``refused`` (answered with a refusal).
    status: str = Field(max_length=20)
    request: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    response: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    decision_id: str | None = Field(default=None, max_length=64)
    decision_action: str | None = Field(default=None, max_length=16)
    #: The bank-calendar day and year the amount was counted against (released on a void).
    limit_day: str | None = Field(default=None, max_length=10)
    limit_year: str | None = Field(default=None, max_length=4)
    limited: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class BankLimitUsage(SQLModel, table=True):
    """How much an account sent out in one bank-calendar day (``2026-12-03``) or year (``2026``)."""

    __tablename__ = "bank_limit_usage"

    account_id: int = Field(foreign_key="ledger_accounts.id", primary_key=True)
    period: str = Field(max_length=10, primary_key=True)
    used: int = money()
