"""The transfer on the driver (ADR 0019) writes what the ORM path writes, on SQLite and
PostgreSQL, and keeps its guarantees: a racing duplicate, funds under concurrency, limits,
the balance cap, a transfer to oneself, and a transfer to another bank (pending)."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from typing import Any

import pytest
from sqlmodel import col, select

from mpaas.banking.ledger.check import check_ledger
from mpaas.banking.ledger.models import BankLimitUsage, BankTransferRequest, LedgerPosting, LedgerTransfer
from mpaas.banking.risk.features import counter_key
from mpaas.banking.risk.models import RiskDecision
from mpaas.banking.transfers.driver import Driver
from mpaas.banking.transfers.limits import DEFAULT_CLASSES, ClassLimits, Limits
from mpaas.banking.transfers.requests import transfer_id_for
from mpaas.gateway.codes import GatewayError
from mpaas.gateway.operation import Call, Principal

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres" and not os.environ.get("MPAAS_TEST_DATABASE_URL"):
        pytest.skip("MPAAS_TEST_DATABASE_URL is not set")
    return str(request.param)


async def rows_of(bank: Any, transfer_id: str) -> dict[str, Any]:
    """What one transfer left in every table, without ids, keys and times (their kinds kept)."""
    async with bank.transfers.db.read() as s:
        t = (await s.exec(select(LedgerTransfer).where(LedgerTransfer.transfer_id == transfer_id))).one()
        legs = (
            await s.exec(
                select(LedgerPosting).where(LedgerPosting.transfer_pk == t.id).order_by(col(LedgerPosting.id))
            )
        ).all()
        r = (
            await s.exec(select(BankTransferRequest).where(BankTransferRequest.transfer_id == transfer_id))
        ).one()
    transfer = t.model_dump(exclude={"id", "transfer_id", "created_at", "resolved_at", "timeout_at"})
    transfer["times"] = [type(v).__name__ for v in (t.created_at, t.resolved_at, t.timeout_at)]
    transfer["same_moment"] = t.resolved_at in (None, t.created_at)
    request = r.model_dump(
        exclude={"id", "idempotency_key", "transfer_id", "decision_id", "created_at", "updated_at"}
    )
    response = dict(request.pop("response"))
    assert response.pop("transfer_id") == transfer_id
    assert response.pop("decision_id") == r.decision_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", response.pop("created_at"))
    request["response"] = response
    plan = dict(request["request"]["plan"])
    assert plan.pop("transfer_id") == transfer_id
    request["request"] = {**request["request"], "plan": plan}
    request["times"] = [type(r.created_at).__name__, r.created_at == r.updated_at]
    return {
        "transfer": transfer,
        "postings": [
            (p.account_id, p.amount, type(p.posted_at).__name__, p.posted_at == t.created_at) for p in legs
        ],
        "request": request,
    }


async def used(bank: Any, account_id: int) -> dict[str, int]:
    async with bank.transfers.db.read() as s:
        rows = (await s.exec(select(BankLimitUsage).where(BankLimitUsage.account_id == account_id))).all()
    return {len(u.period): u.used for u in rows}  # 10: the day, 4: the year


async def test_the_driver_writes_the_rows_the_orm_writes(bank: Any, backend: str) -> None:
    assert isinstance(bank.transfers.driver, Driver)  # a file or PostgreSQL: the driver path
    alice, bob = await bank.holder(funds=100_000), await bank.holder()
    account = await bank.transfers.accounts.of_user(alice.user)
    to_bank = {"bank": "ICBC", "account": "6222000011112222", "name": "Li"}
    by_driver = [
        await bank.send(alice, 1_234, to={"user_id": bob.user_id}, key="same-body", memo="rent"),
        await bank.send(alice, 2_000, to=to_bank, key="same-body-2", memo="out"),
    ]
    assert all(r.ok for r in by_driver), [r.error for r in by_driver]
    assert await used(bank, account.id) == {10: 3_234, 4: 3_234}
    driver, bank.transfers.driver = bank.transfers.driver, None  # the ORM path, same app and accounts
    try:
        by_orm = [
            await bank.send(alice, 1_234, to={"user_id": bob.user_id}, key="same-body-orm", memo="rent"),
            await bank.send(alice, 2_000, to=to_bank, key="same-body-orm-2", memo="out"),
        ]
    finally:
        bank.transfers.driver = driver
    assert all(r.ok for r in by_orm), [r.error for r in by_orm]
    assert await used(bank, account.id) == {10: 6_468, 4: 6_468}
    for d, o in zip(by_driver, by_orm, strict=True):
        blank = {"transfer_id": "", "decision_id": "", "created_at": ""}
        assert d.result | blank == o.result | blank
        assert await rows_of(bank, d.result["transfer_id"]) == await rows_of(bank, o.result["transfer_id"])
    interbank = await rows_of(bank, by_driver[1].result["transfer_id"])  # pending, then the stand-in posts it
    assert (interbank["transfer"]["kind"], by_driver[1].result["status"]) == ("interbank", "pending")
    # a retry of the driver's request answers the first answer, a changed body is refused
    again = await bank.send(alice, 1_234, to={"user_id": bob.user_id}, key="same-body", memo="rent")
    assert again.result == by_driver[0].result
    changed = await bank.send(alice, 1_235, to={"user_id": bob.user_id}, key="same-body", memo="rent")
    assert (changed.code, changed.error["code"]) == (4001, "idempotency_key_reused")
    assert (await bank.balance(alice))["balance"] == 100_000 - 2 * 1_234 - 2 * 2_000 + 0
    assert (await check_ledger(bank.transfers.db)).clean


async def test_racing_duplicates_and_funds_under_concurrency_on_the_driver(bank: Any, backend: str) -> None:
    alice, bob = await bank.holder(funds=10_000), await bank.holder()
    bank.risk.gate = asyncio.Event()
    dupes = [
        asyncio.create_task(bank.send(alice, 7_000, to={"user_id": bob.user_id}, key="racing-0001"))
        for _ in range(3)
    ]
    while len(bank.risk.decided) < 3:
        await asyncio.sleep(0)
    bank.risk.gate.set()
    results = await asyncio.gather(*dupes)
    assert [r.code for r in results] == [1000, 1000, 1000]
    assert len({r.result["transfer_id"] for r in results}) == 1
    bank.risk.gate = None
    storm = await asyncio.gather(
        *(
            bank.send(alice, 300, to={"user_id": bob.user_id}, key=f"storm-{uuid.uuid4().hex}")
            for _ in range(16)
        )
    )
    assert sum(r.ok for r in storm) == 10  # 3,000 left: ten of 300
    assert {r.error["code"] for r in storm if not r.ok} == {"insufficient_funds"}
    balance = await bank.balance(alice)
    assert (balance["balance"], balance["available"]) == (0, 0)
    assert (await check_ledger(bank.transfers.db)).clean


async def test_refusals_on_the_driver_are_explained_and_stored(bank: Any, backend: str) -> None:
    alice, carol = await bank.holder(funds=1_000_000), await bank.holder(account_class="III")
    capped = await bank.send(alice, 200_001, to={"user_id": carol.user_id}, key="capped-0001")
    assert (capped.code, capped.error["code"]) == (1001, "balance_cap_exceeded")
    assert (
        await bank.send(alice, 200_001, to={"user_id": carol.user_id}, key="capped-0001")
    ).error == capped.error
    over = await bank.send(
        alice, 1_000_001, to={"user_id": carol.user_id}, key="limited-0001"
    )  # Class II: 10,000/day
    assert over.error["code"] == "transfer_limit_exceeded"
    assert (await bank.send(alice, 999_999, to={"user_id": carol.user_id}, key="limited-0002")).error[
        "code"
    ] == ("balance_cap_exceeded")
    to_self = await bank.send(alice, 10, to={"user_id": alice.user_id}, key="to-self-0001")
    assert (to_self.code, to_self.error["code"]) == (4001, "account_not_found")
    missing = await bank.send(alice, 10, to={"user_id": "u_0000000000000000"}, key="nobody-00001")
    assert missing.error["code"] == "account_not_found"
    account = await bank.transfers.accounts.of_user(alice.user)
    assert await used(bank, account.id) == {}  # nothing counted by a refused transfer
    assert (await bank.balance(alice))["balance"] == 1_000_000


async def test_day_and_year_limits_on_the_driver(bank: Any, backend: str) -> None:
    small = ClassLimits(day_out=1_000, year_out=1_500, bound_exempt=True)
    bank.transfers.limits = Limits({**DEFAULT_CLASSES, "II": small}, bank.transfers.limits.timezone)
    alice, bob = await bank.holder(funds=100_000), await bank.holder()
    account = await bank.transfers.accounts.of_user(alice.user)
    bank.env.banking.clock.fixed = 1_796_000_000.0  # a fixed day
    assert (await bank.send(alice, 600, to={"user_id": bob.user_id})).ok
    day = await bank.send(alice, 401, to={"user_id": bob.user_id})
    assert (day.error["code"], day.error["detail"]) == (
        "transfer_limit_exceeded",
        {"period": "daily", "limit_fen": 1_000},
    )
    assert (await bank.send(alice, 400, to={"user_id": bob.user_id})).ok
    bank.env.banking.clock.fixed += 86_400  # the next day, same year: the year's 1,500 is what is left
    year = await bank.send(alice, 501, to={"user_id": bob.user_id})
    assert (year.error["code"], year.error["detail"]) == (
        "transfer_limit_exceeded",
        {"period": "yearly", "limit_fen": 1_500},
    )
    async with bank.transfers.db.read() as s:
        rows = (await s.exec(select(BankLimitUsage).where(BankLimitUsage.account_id == account.id))).all()
    assert sorted((len(u.period), u.used) for u in rows) == [
        (4, 1_000),
        (10, 1_000),
    ]  # nothing of the refusals
    assert (await bank.balance(alice))["balance"] == 100_000 - 1_000


async def test_the_user_of_a_call_reads_the_same_on_the_driver(bank: Any) -> None:
    """``UserService.user_of`` (every logged-in call): on PostgreSQL one compiled statement on
    asyncpg, on SQLite the ORM; both give the user the ORM reads, and refuse an unknown one."""
    holder = await bank.holder(funds=100)
    users = bank.env.banking.users
    call = Call(
        "bank",
        "dev",
        "com.bank.account.balance",
        1,
        "n",
        "r",
        None,
        Principal("1", 2, "e_account", holder.user_id),
    )
    read = await users.user_of(call)
    on_driver, users._read_user = users._read_user, None  # the ORM path, as SQLite runs it
    try:
        reference = await users.user_of(call)
    finally:
        users._read_user = on_driver
    assert (on_driver is None) == (bank.env.banking.transfers.db.is_sqlite)
    assert read.model_dump() == reference.model_dump() and read.card_last4 == holder.card[-4:]
    call.principal = Principal("1", 2, "e_account", "u_nobody")
    with pytest.raises(GatewayError):
        await users.user_of(call)
    # a gateway call's principal carries the user its session lookup read: no second read
    token = holder.client.session
    assert token is not None
    principal = await bank.env.banking.sessions.resolve(
        "bank", holder.client.device, token, holder.client.device_kid
    )
    assert principal is not None and principal.user.model_dump() == reference.model_dump()
    users._read_user, users.db = None, None  # a read now would fail
    try:
        assert (await users.user_of(Call("bank", "d", "o", 1, "n", "r", None, principal))) is principal.user
    finally:
        users._read_user, users.db = on_driver, bank.transfers.db


@pytest.fixture
def cel_engine(env: Any) -> Any:
    """The app's own CEL engine, taken before ``bank`` swaps in the scripted one."""
    return env.banking.transfers.risk


async def test_an_allowed_transfer_and_its_decision_commit_together(
    cel_engine: Any, bank: Any, backend: str
) -> None:
    """ADR 0019: the CEL engine hands an allow's record back and the transfer's transaction
    writes it; when that transaction does not commit (a refusal after the allow), the
    decision is stored alone. Every decision is stored exactly once either way."""
    assert getattr(cel_engine, "defers_records", False)
    bank.transfers.risk = cel_engine
    alone_writes: list[str] = []
    store_row = cel_engine.decisions.store_row

    async def counted(row: dict[str, Any], case: Any = None) -> None:
        alone_writes.append(row["id"])
        await store_row(row, case)

    cel_engine.decisions.store_row = counted
    alice, bob = await bank.holder(funds=50_000), await bank.holder()

    async def decisions(transfer_key: str) -> list[Any]:
        transfer_id = transfer_id_for(alice.user.id, transfer_key)
        async with bank.transfers.db.read() as s:
            query = select(RiskDecision).where(RiskDecision.subject == transfer_id)
            return list((await s.exec(query)).all())

    sent = await bank.send(alice, 1_000, to={"user_id": bob.user_id}, key="with-decision-1")
    assert sent.ok, sent.error
    [kept] = await decisions("with-decision-1")
    assert (kept.id, kept.action) == (sent.result["decision_id"], "allow")
    assert kept.inputs["txn"]["amount"] == 1_000 and kept.outcomes and kept.created_at is not None
    assert alone_writes == []  # written by the transfer's own transaction
    for key, amount, code in (
        ("no-funds-0001", 49_001, "insufficient_funds"),  # refused by the ledger, after the allow
        ("over-limit-01", 1_000_001, "transfer_limit_exceeded"),  # refused before the write
    ):
        refused = await bank.send(alice, amount, to={"user_id": bob.user_id}, key=key)
        assert refused.error["code"] == code
        [alone] = await decisions(key)
        assert alone.action == "allow" and alone.inputs["txn"]["amount"] == amount
        assert alone_writes[-1] == alone.id
    assert len(alone_writes) == 2
    assert (await bank.balance(alice))["balance"] == 49_000


async def test_a_transfer_is_counted_once_as_it_is_decided_and_a_refused_one_not_at_all(
    cel_engine: Any, bank: Any, backend: str
) -> None:
    """The CEL engine counts a transfer in the velocity windows as it decides it (one step
    with the read: transfers decided at once see each other); a retry counts nothing more, and
    a transfer the ledger refuses after the allow gives its count back."""
    assert getattr(cel_engine, "counts_on_decide", False)
    bank.transfers.risk = cel_engine
    alice, bob = await bank.holder(funds=50_000), await bank.holder()
    for key, amount in (("counted-once-1", 1_000), ("counted-once-1", 1_000), ("no-funds-0002", 49_001)):
        await bank.send(alice, amount, to={"user_id": bob.user_id}, key=key)
    user_key = counter_key("transfer", "user", alice.user_id)
    device_key = counter_key("transfer", "device", alice.client.device)
    counts = await cel_engine.counters.read([user_key, device_key], cel_engine.clock(), False)
    assert [counts[k].count["1h"] for k in (user_key, device_key)] == [1, 1]
    assert counts[user_key].amount["1h"] == 1_000
    assert (await bank.balance(alice))["balance"] == 49_000
