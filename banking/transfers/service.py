"""Transfers: an idempotent create, checked against limits and risk, recorded in the ledger.

A create runs in this order:

1. the idempotency key: a stored request answers again (or refuses a changed body);
2. the payee is resolved (a user of this bank, or an account at another bank);
3. the risk engine decides, and counts the transfer in its velocity windows in the same
   step (so that transfers decided at the same moment see each other); ``deny`` is stored
   as the answer; ``challenge`` (and ``review``) stores the request as awaiting step-up and
   texts a one-time code, and ``com.bank.transfer.confirm`` resumes that same request
   (neither stays counted: a confirmed transfer is counted when it commits);
4. one SQL transaction inserts the request row, takes the amount from the day's and
   year's limits and makes the ledger transfer: a crash leaves all or none of it, and a
   racing duplicate stops on the request's unique key, then answers what the first got;
5. after the commit, a transfer to another bank goes to the clearing system (it stays
   pending until the answer, or the sweep, posts or voids it); a transfer the transaction
   refused gives its count back. An outcome the service cannot know (the database failed
   mid-commit) keeps the count: on the safe side for the velocity rules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, cast

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.banking.errors import CodeRejected
from mpaas.banking.ledger.errors import (
    InsufficientFunds,
    LedgerRefusal,
    NotAwaitingStepUp,
    StepUpRequired,
    TransferDenied,
)
from mpaas.banking.ledger.models import BankTransferRequest
from mpaas.banking.ledger.service import PENDING, POSTED, Ledger, Move, rowcount
from mpaas.banking.models import BankUser
from mpaas.banking.risk.decision import CountsOnDecide, Decision, DefersRecords, RiskContext, RiskEngine
from mpaas.banking.transfers.accounts import Accounts, user_code
from mpaas.banking.transfers.clearing import ClearingOrder, ClearingSystem
from mpaas.banking.transfers.clearing_answers import ClearingAnswers
from mpaas.banking.transfers.driver import Driver, DuplicateRequest, LegRefused, TransferExistsHere
from mpaas.banking.transfers.limits import Limits, Periods
from mpaas.banking.transfers.plan import (
    Plan,
    answer,
    driver_write,
    make_plan,
    new_answer,
    plan_of_found,
    request_values,
    risk_context,
    settled_columns,
)
from mpaas.banking.transfers.requests import (
    AWAITING,
    DONE,
    REFUSED,
    Requests,
    TransferRequest,
    challenge_detail,
    refusal_record,
    replay,
    transfer_id_for,
)
from mpaas.banking.users.codes import OneTimeCodes
from mpaas.banking.users.sessions import at
from mpaas.gateway.codes import GatewayError
from mpaas.gateway.operation import Call
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.banking.transfers")


class _Raced(Exception):
    """Another process resumed the same held request first."""


class TransferService(ClearingAnswers):
    def __init__(
        self,
        db: Database,
        ledger: Ledger,
        accounts: Accounts,
        limits: Limits,
        risk: RiskEngine,
        codes: OneTimeCodes,
        clearing: ClearingSystem,
        clock: Callable[[], float],
        clearing_timeout: float,
    ) -> None:
        self.db, self.ledger, self.accounts, self.limits = db, ledger, accounts, limits
        self.risk, self.codes, self.clearing, self.clock = risk, codes, clearing, clock
        self.clearing_timeout = clearing_timeout
        self.requests = Requests(db)
        #: the driver path of a new transfer (ADR 0019); None keeps the ORM (SQLite in memory)
        self.driver = Driver.for_database(db)
        self._bank_accounts: dict[tuple[str, str], int] = {}  # (kind, currency): id, never changes

    async def close(self) -> None:
        """Close the driver's own SQLite connection (banking's shutdown should call this)."""
        if self.driver is not None:
            await self.driver.close()

    # Create and confirm

    async def create(self, call: Call, user: BankUser, req: TransferRequest) -> dict[str, Any]:
        assert user.id is not None
        digest = req.digest()
        transfer_id = transfer_id_for(user.id, req.idempotency_key)
        plan: Plan | None = None
        for _ in range(2):
            found, plan = await self._resolve(user, req, transfer_id)
            if found is not None:
                return await self._replay(call, user, found, digest)
            if plan is not None:
                break
            await self._open_accounts(user, req)  # first use: outside the session, then read again
        assert plan is not None
        context = risk_context(call, user, plan, req.context)
        decision = await self._decide(context)
        row = BankTransferRequest(
            user_pk=user.id,
            idempotency_key=req.idempotency_key,
            request_hash=digest,
            transfer_id=plan.transfer_id,
            status=DONE,
            request={"plan": asdict(plan), "context": dict(req.context)},
            decision_id=decision.id,
            decision_action=decision.action,
        )
        if decision.action == "deny":
            refusal = TransferDenied("this transfer was declined", detail={"decision_id": decision.id})
            row.status, row.response = REFUSED, refusal_record(refusal)
            return await self._store_unexecuted(call, user, row, digest, refusal)
        if decision.action in ("challenge", "review"):
            row.status = AWAITING
            return await self._store_unexecuted(call, user, row, digest, None)
        return await self._execute(user, plan, context, row, digest, decision)

    async def _decide(self, context: RiskContext) -> Decision:
        """The risk decision: an allow's record is written by the transfer's own transaction
        (ADR 0019), and the transfer counted in the velocity windows as it is decided, when
        the engine can (given back by :meth:`_execute` if the transfer is refused)."""
        defer = self.driver is not None and getattr(self.risk, "defers_records", False)
        if getattr(self.risk, "counts_on_decide", False):
            return await cast(CountsOnDecide, self.risk).decide("transfer", context, defer=defer, count=True)
        if defer:
            return await cast(DefersRecords, self.risk).decide("transfer", context, defer=True)
        return await self.risk.decide("transfer", context)

    async def confirm(self, call: Call, user: BankUser, transfer_id: str, code: str) -> dict[str, Any]:
        """Step-up: the one-time code resumes the held request, exactly once."""
        assert user.id is not None
        row = await self.requests.by_transfer(user.id, transfer_id)
        if row is None:
            raise NotAwaitingStepUp("no transfer with this id awaits confirmation")
        if row.status != AWAITING:
            return replay(row, row.request_hash)
        if not await self.codes.consume(user.app_id, call.app, user.phone, call.device, code):
            raise CodeRejected("the code is wrong, expired or used up; ask for a new one")
        plan = Plan(**row.request["plan"])
        context = risk_context(call, user, plan, row.request.get("context", {}))
        return await self._execute(user, plan, context, row, row.request_hash)

    async def _replay(
        self, call: Call, user: BankUser, row: BankTransferRequest, digest: str
    ) -> dict[str, Any]:
        if row.status == AWAITING and row.request_hash == digest:
            await self._send_code(call, user)
        return replay(row, digest)

    async def _store_unexecuted(
        self, call: Call, user: BankUser, row: BankTransferRequest, digest: str, refusal: GatewayError | None
    ) -> dict[str, Any]:
        stored = await self.requests.insert(row)
        if stored is None:  # a duplicate in flight stored its answer first
            assert user.id is not None
            found = await self.requests.find(user.id, row.idempotency_key)
            assert found is not None
            return replay(found, digest)
        if refusal is not None:
            raise refusal
        await self._send_code(call, user)
        raise StepUpRequired(
            "confirm this transfer with the code sent to your phone", detail=challenge_detail(row.transfer_id)
        )

    async def _send_code(self, call: Call, user: BankUser) -> None:
        try:
            await self.codes.send(user.app_id, call.app, user.phone, call.device)
        except GatewayError as exc:  # too many codes: the last one still works
            log.info("step-up code not sent", extra={"error": exc.code})

    async def _execute(
        self,
        user: BankUser,
        plan: Plan,
        context: RiskContext,
        row: BankTransferRequest,
        digest: str,
        decision: Decision | None = None,
    ) -> dict[str, Any]:
        now = self.clock()
        when = self.limits.periods(now)
        counted = self.limits.counts(plan.account_class, plan.bound)
        new = row.id is None
        try:
            if new and self.driver is not None:
                response = await self._drive(plan, row, now, when if counted else None, decision)
            else:
                response = await self._write(row, plan, now, when, counted)
        except (IntegrityError, DuplicateRequest, _Raced):
            assert user.id is not None
            found = await self.requests.find(user.id, row.idempotency_key)
            if found is None:
                raise
            return replay(found, digest)
        except LedgerRefusal as exc:
            if decision is not None and decision.reservation is not None:  # refused: not counted
                await cast(CountsOnDecide, self.risk).release(decision)
            if new:  # nothing of this request was stored: store its refusal
                row.status, row.response = REFUSED, refusal_record(exc)
                await self.requests.insert(row)
            else:
                assert row.id is not None
                await self.requests.settle_refused(row.id, exc)
            raise
        if plan.external:
            to = (str(plan.to["bank"]), str(plan.to["account"]), str(plan.to.get("name", "")))
            await self.clearing.submit(ClearingOrder(plan.transfer_id, plan.amount, plan.currency, *to))
        if decision is None or decision.reservation is None:  # else counted when decided
            try:
                await self.risk.committed("transfer", context)
            except Exception:  # the money moved; a counter that missed it must not undo the answer
                log.exception("risk engine: committed() failed")
        return response

    async def _write(
        self, row: BankTransferRequest, plan: Plan, now: float, when: Periods, counted: bool
    ) -> dict[str, Any]:
        """The transaction through the ORM: a held request, or what the driver hands back."""
        new = row.id is None
        async with self.db.write() as s:
            if not new:
                await self._claim(s, row)
            if counted:
                await self.limits.take(s, plan.debit, plan.account_class, plan.amount, when)
            move = Move(
                plan.transfer_id,
                plan.debit,
                plan.credit,
                plan.amount,
                plan.currency,
                pending=plan.external,
                timeout_at=at(now + self.clearing_timeout) if plan.external else None,
                kind="interbank" if plan.external else "internal",
                memo=plan.memo,
            )
            [made] = await self.ledger.create(s, [move], at(now))
            response = answer(made, plan, row.decision_id)
            settled = settled_columns(response, when if counted else None, at(now))
            if new:  # last: a racing duplicate finds the transfer made, then stops on this key
                values = request_values(row, settled, at(now))
                await (await s.connection()).execute(insert(BankTransferRequest).values(**values))
            else:
                update_row = update(BankTransferRequest).where(col(BankTransferRequest.id) == row.id)
                await rowcount(s, update_row.values(**settled))
        return response

    async def _drive(
        self,
        plan: Plan,
        row: BankTransferRequest,
        now: float,
        when: Periods | None,
        decision: Decision | None,
    ) -> dict[str, Any]:
        """A new request's transaction on the driver; what is rare goes back to the ORM. A
        deferred risk decision is written in the same transaction, or alone when it fails."""
        assert self.driver is not None
        moment = at(now)
        status = PENDING if plan.external else POSTED
        response = new_answer(plan.transfer_id, status, moment, plan.memo, plan, row.decision_id)
        timeout_at = at(now + self.clearing_timeout) if plan.external else None
        values = request_values(row, settled_columns(response, when, moment), moment)
        record = None if decision is None else decision.record
        committed = False
        try:
            work = driver_write(
                self.driver.statements, self.limits, plan, when, moment, timeout_at, values, record
            )
            await self.driver.write(work)
            committed = True
        except TransferExistsHere:  # a retry or a racer made this transfer id: the ORM answers
            return await self._write(row, plan, now, when or self.limits.periods(now), when is not None)
        except LegRefused as exc:
            async with self.db.read() as s:
                await self.ledger.explain(s, exc.account_id, exc.which, plan.currency)
            raise InsufficientFunds("the balance does not cover this amount") from None
        finally:
            if not committed and record is not None:  # every decision is stored, allowed or not
                await cast(DefersRecords, self.risk).store_record(cast(Decision, decision))
        return response

    async def _claim(self, s: AsyncSession, row: BankTransferRequest) -> None:
        """Take a held request (once: a second confirm finds it taken)."""
        taken = await rowcount(
            s,
            update(BankTransferRequest)
            .where(col(BankTransferRequest.id) == row.id, col(BankTransferRequest.status) == AWAITING)
            .values(status=DONE),
        )
        if taken != 1:
            raise _Raced()

    async def _open_accounts(self, user: BankUser, req: TransferRequest) -> None:
        await self.accounts.of_user(user)
        if req.to_user is not None:
            await self.accounts.of_public_id(user.app_id, req.to_user)

    async def _resolve(
        self, user: BankUser, req: TransferRequest, transfer_id: str
    ) -> tuple[BankTransferRequest | None, Plan | None]:
        """The stored request of this key, or the request's plan (None when an account is not
        open yet), read on the driver or in one ORM session."""
        assert user.id is not None
        if self.driver is None:
            async with self.db.read() as s:  # the reads share one connection from the pool
                found = await self.requests.find_in(s, user.id, req.idempotency_key)
                return found, None if found is not None else await self._plan(s, user, req, transfer_id)
        values = {
            "user_pk": user.id,
            "key": req.idempotency_key,
            "code": user_code(user),
            "app_id": user.app_id,
            "payee": req.to_user,
        }
        got = await self.driver.read(values)
        if got.request_id is not None:
            return await self.requests.find(user.id, req.idempotency_key), None
        settlement = await self._bank_account("settlement", req.currency) if req.to_user is None else None
        return None, plan_of_found(got, user, req, transfer_id, settlement)

    async def _bank_account(self, kind: str, currency: str) -> int:
        """The id of one of the bank's own accounts: made once, never deleted, so kept."""
        found = self._bank_accounts.get((kind, currency))
        if found is None:
            async with self.db.read() as s:
                account = await self.ledger.bank_account(s, kind, currency)
            assert account.id is not None
            found = self._bank_accounts[kind, currency] = account.id
        return found

    async def _plan(
        self, s: AsyncSession, user: BankUser, req: TransferRequest, transfer_id: str
    ) -> Plan | None:
        """The accounts and rules of a request through the ORM; None when an account is not open yet."""
        account = await self.accounts.lookup(s, user)
        if account is None:
            return None
        assert account.id is not None
        if req.to_user is not None:
            payee, payee_account = await self.accounts.lookup_public(s, user.app_id, req.to_user)
            if payee_account is None:
                return None
            assert payee_account.id is not None
            mine = (account.id, account.account_class)
            return make_plan(user, req, transfer_id, mine, (payee.public_id, payee_account.id), None)
        settlement = await self.ledger.bank_account(s, "settlement", req.currency)
        return make_plan(user, req, transfer_id, (account.id, account.account_class), None, settlement.id)
