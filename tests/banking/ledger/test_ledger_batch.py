"""Ledger.create_batch: many transfers in a few statements, all or none, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mpaas.banking.ledger.check import check_ledger
from mpaas.banking.ledger.errors import BalanceCapExceeded, InsufficientFunds, TransferExists
from mpaas.banking.ledger.service import Move


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_batch_posts_all_or_none(bank: Any) -> None:
    alice, bob = await bank.holder(funds=300_000), await bank.holder()
    carol = await bank.holder(account_class="III")
    accounts = bank.transfers.accounts
    a, b, c = [(await accounts.of_user(h.user)).id for h in (alice, bob, carol)]
    db, ledger, now = bank.env.banking.sessions.db, bank.transfers.ledger, datetime.now(UTC)

    async def balances() -> list[int]:
        return [(await bank.balance(h))["balance"] for h in (alice, bob, carol)]

    refusals: list[tuple[type[Exception], list[Move]]] = [
        # 200,000 + 100,001 > 300,000: the first move must not stay posted either
        (InsufficientFunds, [Move("b-1", a, b, 200_000, "CNY"), Move("b-2", a, b, 100_001, "CNY")]),
        # Class III caps the balance at 2,000 yuan: two moves that each fit, together do not
        (BalanceCapExceeded, [Move("b-3", a, c, 150_000, "CNY"), Move("b-4", a, c, 50_001, "CNY")]),
    ]
    for error, moves in refusals:
        with pytest.raises(error):
            async with db.write() as s:
                await ledger.create_batch(s, moves, now)
        assert await balances() == [300_000, 0, 0]
    async with db.write() as s:
        made = await ledger.create_batch(
            s,
            [Move("b-5", a, b, 600, "CNY"), Move("b-6", a, c, 300, "CNY"), Move("b-7", a, c, 100, "CNY")],
            now,
        )
    assert made == 3
    assert await balances() == [299_000, 600, 400]
    with pytest.raises(TransferExists):  # a batch never answers an existing id again
        async with db.write() as s:
            await ledger.create_batch(s, [Move("b-8", a, b, 1, "CNY"), Move("b-5", a, b, 600, "CNY")], now)
    assert await balances() == [299_000, 600, 400]
    assert (await check_ledger(db)).clean
