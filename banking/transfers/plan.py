"""A resolved transfer request (:class:`Plan`), its answer, its risk context, and the
transaction the driver runs for a new one (:func:`driver_write`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from mpaas.banking.ledger.errors import AccountNotFound
from mpaas.banking.ledger.models import BankTransferRequest, LedgerTransfer
from mpaas.banking.ledger.service import PENDING, POSTED
from mpaas.banking.models import BankUser
from mpaas.banking.risk.decision import RiskContext
from mpaas.banking.transfers.driver import Found, LegRefused, Statements, Step, Write
from mpaas.banking.transfers.limits import Limits, Periods
from mpaas.banking.transfers.requests import DONE, TransferRequest
from mpaas.gateway.operation import Call


@dataclass(frozen=True)
class Plan:
    """A resolved request: which accounts, and what the limits and the clearing need."""

    transfer_id: str
    debit: int
    credit: int
    account_class: str | None
    amount: int
    currency: str
    external: bool
    bound: bool
    memo: str
    to: dict[str, Any]


def make_plan(
    user: BankUser,
    req: TransferRequest,
    transfer_id: str,
    account: tuple[int, str | None],
    payee: tuple[str, int] | None,
    settlement_id: int | None,
) -> Plan:
    """The plan of a request: the sender's (account id, class), the payee's (public id, account
    id) for a transfer to a user, or the settlement account's id for one to another bank."""
    if payee is not None:
        to: dict[str, Any] = {"user_id": payee[0]}
        credit, external, bound = payee[1], False, False
    else:
        assert settlement_id is not None and req.to_account is not None
        to = {"bank": req.to_bank, "account": req.to_account, "name": req.to_name}
        credit, external = settlement_id, True
        bound = (
            user.card_bank == req.to_bank
            and user.card_last4 is not None
            and req.to_account[-4:] == user.card_last4
        )
    return Plan(
        transfer_id, account[0], credit, account[1], req.amount, req.currency, external, bound, req.memo, to
    )


def plan_of_found(
    got: Found, user: BankUser, req: TransferRequest, transfer_id: str, settlement_id: int | None
) -> Plan | None:
    """The plan from the driver's one read (no stored request); None when an account is not open
    yet; an unknown payee, or one without an e-account, is refused as the ORM path refuses it."""
    if got.account_id is None:
        return None
    account = (got.account_id, got.account_class)
    if req.to_user is None:
        return make_plan(user, req, transfer_id, account, None, settlement_id)
    if got.payee_public_id is None or got.payee_tier in ("visitor", "registered"):
        raise AccountNotFound("no e-account holder with this user id")
    if got.payee_account_id is None:
        return None
    return make_plan(user, req, transfer_id, account, (got.payee_public_id, got.payee_account_id), None)


def risk_context(call: Call, user: BankUser, plan: Plan, reported: dict[str, Any]) -> RiskContext:
    txn = {
        "id": plan.transfer_id,
        "amount": plan.amount,
        "currency": plan.currency,
        "from_account": plan.debit,
        "to_account": plan.credit,
        "counterparty": plan.to.get("user_id") or f"{plan.to.get('bank')}:{plan.to.get('account')}",
        "external": plan.external,
    }
    device = {
        "id": call.device,
        "model": reported.get("device_model"),
        "rooted": reported.get("rooted"),
        "first_seen_days": reported.get("first_seen_days"),
    }
    net = {"ip": reported.get("ip"), "carrier": reported.get("carrier")}
    geo = {k: reported[k] for k in ("lat", "lon", "region") if reported.get(k) is not None}
    return RiskContext(txn, {"id": user.public_id, "tier": user.tier}, device, net, geo)


def answer(transfer: LedgerTransfer, plan: Plan, decision_id: str | None) -> dict[str, Any]:
    return new_answer(
        transfer.transfer_id, transfer.status, transfer.created_at, transfer.memo, plan, decision_id
    )


def new_answer(
    transfer_id: str, status: str, created_at: datetime, memo: str, plan: Plan, decision_id: str | None
) -> dict[str, Any]:
    return {
        "transfer_id": transfer_id,
        "status": status,
        "amount": plan.amount,
        "currency": plan.currency,
        "to": plan.to,
        "memo": memo,
        "created_at": iso(created_at),
        "decision_id": decision_id,
    }


def iso(value: datetime) -> str:
    return (value - timedelta(microseconds=value.microsecond)).isoformat()


def driver_write(
    st: Statements,
    limits: Limits,
    plan: Plan,
    when: Periods | None,
    now: datetime,
    timeout_at: datetime | None,
    request: dict[str, Any],
    decision: Mapping[str, Any] | None = None,
) -> Write:
    """The driver's transaction for a new request: the same statements, in the same order, as
    ``Limits.take``, ``Ledger.create`` and the request insert of the ORM path, then the risk
    decision's record when the engine deferred it. ``when`` is None when the limits do not
    count this transfer; a limit the amount alone exceeds raises here."""
    if plan.amount <= 0 or plan.debit == plan.credit:  # as Ledger.create refuses it
        raise AccountNotFound("a transfer moves a positive amount between two accounts")
    rules = limits.rules(plan.account_class, when) if when is not None else []
    for _period, limit, name in rules:
        if plan.amount > limit:
            raise limits.refusal(plan.account_class, limit, name)
    side = PENDING if plan.external else POSTED
    transfer = {
        "transfer_id": plan.transfer_id,
        "debit_account_id": plan.debit,
        "credit_account_id": plan.credit,
        "amount": plan.amount,
        "currency": plan.currency,
        "status": side,
        "chain": None,
        "kind": "interbank" if plan.external else "internal",
        "memo": plan.memo,
        "timeout_at": timeout_at,
        "created_at": now,
        "resolved_at": None if plan.external else now,
    }
    legs = sorted([(plan.debit, "debits"), (plan.credit, "credits")])
    if st.chains:  # PostgreSQL: one statement
        values: dict[str, Any] = {
            "debit": plan.debit,
            "credit": plan.credit,
            "amount": plan.amount,
            "currency": plan.currency,
            "day": when.day if when is not None else "",
            "year": when.year if when is not None else "",
            "day_limit": None,
            "year_limit": None,
            "n_limits": len(rules),
        }
        refusals: dict[str, Callable[[], Exception]] = {}
        for _period, limit, name in rules:
            values["day_limit" if name == "daily" else "year_limit"] = limit
            refusals[f"limit:{name}"] = partial(limits.refusal, plan.account_class, limit, name)
        for step, (account_id, which) in zip(("leg:lo", "leg:hi"), legs, strict=True):
            refusals[step] = partial(LegRefused, account_id, which)
        values.update({f"t_{k}": v for k, v in transfer.items()})
        values.update({f"r_{k}": v for k, v in request.items()})
        if decision is not None:
            values.update({f"d_{k}": v for k, v in decision.items()})
        shape = (plan.external, legs[0][1] == "debits", decision is not None)
        return Write(chain=shape, chain_args=st.chains[shape].args(values), refusals=refusals)
    steps: list[Step] = []
    for period, limit, name in rules:
        values = {"account_id": plan.debit, "period": period, "amount": plan.amount, "limit": limit}
        refusal = limits.refusal(plan.account_class, limit, name)
        steps.append(Step(st.limit.sql, st.limit.args(values), partial(_same, refusal)))
    leg_steps = []
    for account_id, which in legs:
        leg = st.legs[which, side]
        values = {"account_id": account_id, "currency": plan.currency, "amount": plan.amount}
        leg_steps.append(Step(leg.sql, leg.args(values), partial(LegRefused, account_id, which)))
    postings = None
    if not plan.external:
        debit, credit, amount = plan.debit, plan.credit, plan.amount

        def postings(pk: int) -> tuple[Any, ...]:
            values = {"pk": pk, "a1": debit, "n1": -amount, "a2": credit, "n2": amount, "now": now}
            return st.postings.args(values)

    kept = () if decision is None else st.decision.args(decision)
    return Write(steps, st.transfer.args(transfer), leg_steps, postings, st.request.args(request), kept)


def _same(refusal: Exception) -> Exception:
    return refusal


def request_values(row: BankTransferRequest, settled: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The request row's columns as the ORM path inserts them."""
    return row.model_dump(exclude={"id"}) | settled | {"created_at": now}


def settled_columns(response: dict[str, Any], when: Periods | None, moment: datetime) -> dict[str, Any]:
    """The request row's columns once its transfer is made (``when``: the periods counted)."""
    return {
        "status": DONE,
        "response": response,
        "limit_day": when.day if when is not None else None,
        "limit_year": when.year if when is not None else None,
        "limited": when is not None,
        "updated_at": moment,
    }
