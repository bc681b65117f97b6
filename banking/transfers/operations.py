"""Gateway operations of transfers and accounts (version 1, min tier ``e_account``, session).

==============================  ==============================================================
operation                       does
==============================  ==============================================================
``com.bank.transfer.create``    an idempotent transfer to a user of this bank or another bank
``com.bank.transfer.confirm``   the one-time code after a risk challenge: resumes the transfer
``com.bank.transfer.get``       one of the caller's transfers, with its current status
``com.bank.account.balance``    balance, available, pending, and the limits left today/this year
``com.bank.account.statement``  posted lines, newest first, by cursor
==============================  ==============================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mpaas.banking.operations.declare import Declared, operation
from mpaas.banking.transfers.requests import TransferRequest
from mpaas.banking.transfers.views import balance, get_transfer, statement
from mpaas.gateway.operation import Call

if TYPE_CHECKING:
    from mpaas.banking.service import Banking
    from mpaas.banking.transfers.service import TransferService

TIER = "e_account"
MAX_FEN = 10**12  # ten billion yuan: far above any limit, far below BigInteger's range


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ClientContext(Strict):
    """What the app reports for the risk check; never part of the idempotency hash."""

    device_model: str | None = Field(default=None, max_length=64)
    rooted: bool | None = None
    first_seen_days: int | None = Field(default=None, ge=0, le=100_000)
    carrier: str | None = Field(default=None, max_length=32)
    ip: str | None = Field(default=None, max_length=45)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    region: str | None = Field(default=None, max_length=32)


class Payee(Strict):
    user_id: str | None = Field(default=None, pattern=r"u_[0-9a-f]{16}")
    bank: str | None = Field(default=None, min_length=1, max_length=64)
    account: str | None = Field(default=None, pattern=r"[0-9]{8,32}")
    name: str = Field(default="", max_length=64)

    @model_validator(mode="after")
    def one_kind(self) -> Payee:
        internal, external = self.user_id is not None, self.bank is not None and self.account is not None
        if internal == external or (not internal and (self.bank is None) != (self.account is None)):
            raise ValueError("name either user_id (this bank) or bank and account (another bank)")
        return self


class CreateIn(Strict):
    idempotency_key: str = Field(pattern=r"[A-Za-z0-9_-]{8,64}")
    amount: int = Field(ge=1, le=MAX_FEN, description="fen")
    currency: Literal["CNY"] = "CNY"
    to: Payee
    memo: str = Field(default="", max_length=140)
    context: ClientContext = Field(default_factory=ClientContext)


class ConfirmIn(Strict):
    transfer_id: str = Field(pattern=r"t_[0-9a-f]{24}")
    code: str = Field(pattern=r"[0-9]{6}")


class GetIn(Strict):
    transfer_id: str = Field(pattern=r"t_[0-9a-f]{24}")


class Empty(Strict):
    pass


class StatementIn(Strict):
    cursor: str | None = Field(default=None, pattern=r"p[0-9]{1,18}")
    limit: int = Field(default=20, ge=1, le=100)


def to_request(params: CreateIn) -> TransferRequest:
    context = {k: v for k, v in params.context.model_dump().items() if v is not None}
    return TransferRequest(
        params.idempotency_key,
        params.amount,
        params.currency,
        params.to.user_id,
        params.to.bank,
        params.to.account,
        params.to.name,
        params.memo,
        context,
    )


def transfer_operations(b: Banking, transfers: TransferService) -> list[Declared]:
    @operation("com.bank.transfer.create", input=CreateIn, min_tier=TIER, rate="60/m")
    async def create(call: Call, params: CreateIn) -> dict[str, Any]:
        """An idempotent transfer; the same key and body answer the first result again."""
        return await transfers.create(call, await b.users.user_of(call), to_request(params))

    @operation("com.bank.transfer.confirm", input=ConfirmIn, min_tier=TIER, rate="10/m")
    async def confirm(call: Call, params: ConfirmIn) -> dict[str, Any]:
        """Confirm a challenged transfer with the one-time code; it resumes, once."""
        return await transfers.confirm(call, await b.users.user_of(call), params.transfer_id, params.code)

    @operation("com.bank.transfer.get", input=GetIn, min_tier=TIER, idempotent=True)
    async def get(call: Call, params: GetIn) -> dict[str, Any]:
        """One of the caller's transfers with its current status."""
        return await get_transfer(transfers, await b.users.user_of(call), params.transfer_id)

    @operation("com.bank.account.balance", input=Empty, min_tier=TIER, idempotent=True)
    async def account_balance(call: Call, params: Empty) -> dict[str, Any]:
        """Balance, available funds, pending amounts and the limits used today and this year."""
        return await balance(transfers, await b.users.user_of(call))

    @operation("com.bank.account.statement", input=StatementIn, min_tier=TIER, idempotent=True)
    async def account_statement(call: Call, params: StatementIn) -> dict[str, Any]:
        """Posted lines of the caller's account, newest first, by cursor."""
        return await statement(transfers, await b.users.user_of(call), params.cursor, params.limit)

    return [create, confirm, get, account_balance, account_statement]
