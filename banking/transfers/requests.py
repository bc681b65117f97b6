"""Idempotency keys: a create request, its canonical hash, and the answer it got.

Stripe's rule: a key names one request. The same key with the same request answers what
the first got (success, refusal or challenge); with another request it is refused. The
hash covers the operation and the fields that move money (amount, currency, payee,
memo), as canonical JSON, not the device context an app may refresh between retries.
The ledger transfer id is derived from the user and the key, so even two racing
executions of one request name the same transfer and the ledger's unique id stops the
second.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.banking.ledger.errors import IdempotencyKeyReused, StepUpRequired
from mpaas.banking.ledger.models import BankTransferRequest
from mpaas.gateway.codes import GatewayError, ResultCode
from mpaas.storage.db import Database, utcnow

OPERATION = "com.bank.transfer.create"
DONE, REFUSED, AWAITING = "done", "refused", "awaiting_step_up"


@dataclass(frozen=True)
class TransferRequest:
    idempotency_key: str
    amount: int
    currency: str
    to_user: str | None = None
    to_bank: str | None = None
    to_account: str | None = None
    to_name: str = ""
    memo: str = ""
    #: What the app reports of the device, network and place (for the risk check only).
    context: dict[str, Any] = field(default_factory=dict)

    def canonical(self) -> dict[str, Any]:
        fields = asdict(self)
        del fields["idempotency_key"], fields["context"]
        return {"operation": OPERATION, **fields}

    def digest(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


def transfer_id_for(user_pk: int, key: str) -> str:
    return "t_" + hashlib.sha256(f"{user_pk}|{key}".encode()).hexdigest()[:24]


def challenge_detail(transfer_id: str) -> dict[str, str]:
    return {"transfer_id": transfer_id, "challenge": "one_time_code", "confirm": "com.bank.transfer.confirm"}


def refusal_record(exc: GatewayError) -> dict[str, Any]:
    return {"result_code": int(exc.result), "code": exc.code, "message": exc.message, "detail": exc.detail}


def replay(row: BankTransferRequest, digest: str) -> dict[str, Any]:
    """The first answer again, or the refusal of a reused key."""
    if row.request_hash != digest:
        raise IdempotencyKeyReused(
            "this idempotency key was used for a different request; use a new key for a new transfer"
        )
    if row.status == DONE:
        return row.response
    if row.status == AWAITING:
        raise StepUpRequired(
            "confirm this transfer with the code sent to your phone", detail=challenge_detail(row.transfer_id)
        )
    r = row.response
    raise GatewayError(ResultCode(r["result_code"]), r["message"], code=r["code"], detail=r.get("detail"))


class Requests:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def find(self, user_pk: int, key: str) -> BankTransferRequest | None:
        async with self.db.read() as s:
            return await self.find_in(s, user_pk, key)

    async def find_in(self, s: AsyncSession, user_pk: int, key: str) -> BankTransferRequest | None:
        query = select(BankTransferRequest).where(
            BankTransferRequest.user_pk == user_pk, BankTransferRequest.idempotency_key == key
        )
        return (await s.exec(query)).first()

    async def by_transfer(self, user_pk: int, transfer_id: str) -> BankTransferRequest | None:
        async with self.db.read() as s:
            query = select(BankTransferRequest).where(
                BankTransferRequest.user_pk == user_pk, BankTransferRequest.transfer_id == transfer_id
            )
            return (await s.exec(query)).first()

    async def insert(self, row: BankTransferRequest) -> BankTransferRequest | None:
        """Store a request that did not execute (held or refused); None when a racer stored one first."""
        try:
            async with self.db.write() as s:
                s.add(row)
        except IntegrityError:
            return None
        return row

    async def settle_refused(self, row_id: int, exc: GatewayError) -> None:
        """A held request that then failed (limits, funds): its refusal becomes the answer."""
        async with self.db.write() as s:
            row = (await s.exec(select(BankTransferRequest).where(BankTransferRequest.id == row_id))).first()
            if row is not None and row.status == AWAITING:
                row.status, row.response, row.updated_at = REFUSED, refusal_record(exc), utcnow()
                s.add(row)
