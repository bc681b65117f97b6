"""`mpaas ledger check` on a clean and a tampered ledger, and the non-negative rule under
50 concurrent transfers drawing on one account on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from mpaas.banking.ledger.check import check_ledger
from mpaas.banking.ledger.errors import InsufficientFunds, TransferExists
from mpaas.banking.ledger.service import Move
from mpaas.banking.transfers.requests import TransferRequest
from mpaas.cli.main import cli
from mpaas.gateway.operation import Call


async def ledger_check(bank: Any, *args: str) -> Any:
    settings = bank.env.settings
    env = {"MPAAS_DATABASE_URL": settings.database_url, "MPAAS_DATA_DIR": str(settings.data_dir)}
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, cli, ["ledger", "check", *args], env=env)


async def test_check_is_clean_then_finds_a_tampered_posting(bank: Any) -> None:
    alice, bob = await bank.holder(funds=5_000), await bank.holder()
    assert (await bank.send(alice, 1_200, to={"user_id": bob.user_id})).ok
    bank.transfers.clearing.behaviour = "never"
    assert (await bank.send(alice, 300, to={"bank": "B", "account": "6217000000000001"})).ok  # pending
    clean = await ledger_check(bank)
    assert clean.exit_code == 0, clean.output
    assert clean.output.startswith("ledger clean: ")
    report = json.loads((await ledger_check(bank, "--json")).stdout)
    assert (report["clean"], report["postings"]) == (True, 4)

    async with bank.env.banking.sessions.db.write() as s:
        await s.exec(text("UPDATE ledger_postings SET amount = amount + 1 WHERE amount = 1200"))  # type: ignore[call-overload]
    tampered = await ledger_check(bank, "--json")
    assert tampered.exit_code == 1
    found = {(d["check"], d["expected"], d["actual"]) for d in json.loads(tampered.stdout)["differences"]}
    assert ("transfer_sums_to_zero", 0, 1) in found
    assert ("ledger_sums_to_zero", 0, 1) in found
    assert ("credits_posted", 1_201, 1_200) in found
    plain = await ledger_check(bank)
    assert plain.exit_code == 1 and "transfer_sums_to_zero" in plain.output


@pytest.mark.skipif(
    not os.environ.get("MPAAS_TEST_DATABASE_URL"), reason="MPAAS_TEST_DATABASE_URL is not set"
)
@pytest.mark.parametrize("backend", ["postgres"])
async def test_no_negative_balance_under_50_concurrent_transfers(bank: Any) -> None:
    alice, bob = await bank.holder(funds=10_000), await bank.holder()
    call = Call("bank", alice.client.device, "com.bank.transfer.create", 1, "n", "r", None, None)

    async def one(i: int) -> bool:
        req = TransferRequest(f"storm-{i:04d}-{uuid.uuid4().hex[:8]}", 300, "CNY", to_user=bob.user_id)
        try:
            await bank.transfers.create(call, alice.user, req)
        except InsufficientFunds:
            return False
        return True

    results = await asyncio.gather(*(one(i) for i in range(50)))
    assert sum(results) == 33  # 33 × 300 = 9,900 of 10,000; the other 17 found too little
    balance = await bank.balance(alice)
    assert (balance["balance"], balance["available"]) == (100, 100)
    assert (await check_ledger(bank.env.banking.sessions.db)).clean


async def test_linked_transfers_post_together_or_not_at_all(bank: Any) -> None:
    alice, bob = await bank.holder(funds=1_000), await bank.holder()
    a, b = await bank.transfers.accounts.of_user(alice.user), await bank.transfers.accounts.of_user(bob.user)
    db, ledger, now = bank.env.banking.sessions.db, bank.transfers.ledger, datetime.now(UTC)
    with pytest.raises(InsufficientFunds):  # 600 + 600 > 1,000: the first must not stay posted
        async with db.write() as s:
            await ledger.create(
                s, [Move("link-1", a.id, b.id, 600, "CNY"), Move("link-2", a.id, b.id, 600, "CNY")], now
            )
    assert (await bank.balance(alice))["balance"] == 1_000
    async with db.write() as s:
        made = await ledger.create(
            s, [Move("link-3", a.id, b.id, 400, "CNY"), Move("link-4", a.id, b.id, 600, "CNY")], now
        )
    assert [t.chain for t in made] == ["link-3", "link-3"]
    assert ((await bank.balance(alice))["balance"], (await bank.balance(bob))["balance"]) == (0, 1_000)
    with pytest.raises(TransferExists):  # a client id names one transfer
        async with db.write() as s:
            await ledger.create(s, [Move("link-3", a.id, b.id, 401, "CNY")], now)
    assert (await check_ledger(db)).clean
