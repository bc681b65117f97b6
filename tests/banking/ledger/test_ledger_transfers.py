"""Transfers through the gateway: posting, idempotent retries, a reused key, an in-flight
duplicate, funds, and what a user reads back (transfer, balance, statement)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlmodel import func, select

from mpaas.banking.ledger.models import LedgerPosting, LedgerTransfer


async def count_transfers(bank: Any) -> int:
    async with bank.env.banking.sessions.db.session() as s:
        return int((await s.exec(select(func.count()).select_from(LedgerTransfer))).one())


async def test_transfer_posts_and_a_retry_answers_the_first_result(bank: Any) -> None:
    alice, bob = await bank.holder(funds=50_000), await bank.holder()
    first = await bank.send(alice, 12_345, to={"user_id": bob.user_id}, key="key-00000001", memo="rent")
    assert first.ok, first.error
    assert (first.result["status"], first.result["amount"]) == ("posted", 12_345)
    again = await bank.send(alice, 12_345, to={"user_id": bob.user_id}, key="key-00000001", memo="rent")
    assert again.result == first.result
    assert (await bank.balance(alice))["balance"] == 50_000 - 12_345
    assert (await bank.balance(bob))["balance"] == 12_345
    assert await count_transfers(bank) == 2  # the top-up and one transfer, not two
    assert bank.risk.committed_ids == [first.result["transfer_id"]]

    changed = await bank.send(alice, 12_346, to={"user_id": bob.user_id}, key="key-00000001", memo="rent")
    assert (changed.code, changed.error["code"]) == (4001, "idempotency_key_reused")
    assert (await bank.balance(alice))["balance"] == 50_000 - 12_345


async def test_an_in_flight_duplicate_waits_and_never_posts_twice(bank: Any) -> None:
    alice, bob = await bank.holder(funds=10_000), await bank.holder()
    bank.risk.gate = asyncio.Event()
    sends = [
        asyncio.create_task(bank.send(alice, 7_000, to={"user_id": bob.user_id}, key="inflight-1"))
        for _ in range(3)
    ]
    while len(bank.risk.decided) < 3:  # all three are inside the create, none has posted
        await asyncio.sleep(0)
    bank.risk.gate.set()
    results = await asyncio.gather(*sends)
    assert [r.code for r in results] == [1000, 1000, 1000]
    assert len({r.result["transfer_id"] for r in results}) == 1
    assert (await bank.balance(alice))["balance"] == 3_000


async def test_insufficient_funds_is_refused_and_replayed(bank: Any) -> None:
    alice, bob = await bank.holder(funds=1_000), await bank.holder()
    refused = await bank.send(alice, 1_001, to={"user_id": bob.user_id}, key="too-much-1")
    assert (refused.code, refused.error["code"]) == (1001, "insufficient_funds")
    await bank.fund(alice.user, 5_000)
    replayed = await bank.send(alice, 1_001, to={"user_id": bob.user_id}, key="too-much-1")
    assert (replayed.code, replayed.error["code"]) == (1001, "insufficient_funds")  # the key's answer
    assert (await bank.send(alice, 1_001, to={"user_id": bob.user_id}, key="too-much-2")).ok


async def test_reads_transfer_balance_and_statement_pages(bank: Any) -> None:
    alice, bob = await bank.holder(funds=100_000), await bank.holder()
    sent = [await bank.send(alice, 100 + i, to={"user_id": bob.user_id}) for i in range(5)]
    got = await alice.client.call("com.bank.transfer.get", {"transfer_id": sent[2].result["transfer_id"]})
    assert (got.result["status"], got.result["amount"]) == ("posted", 102)
    other = await bob.client.call("com.bank.transfer.get", {"transfer_id": sent[2].result["transfer_id"]})
    assert (other.code, other.error["code"]) == (4001, "transfer_not_found")  # not bob's transfer

    lines, cursor = [], None
    while True:
        page = await alice.client.call(
            "com.bank.account.statement", {"limit": 2, **({"cursor": cursor} if cursor else {})}
        )
        lines += page.result["lines"]
        cursor = page.result["next_cursor"]
        if cursor is None:
            break
    assert [line["amount"] for line in lines] == [-104, -103, -102, -101, -100, 100_000]
    balance = await bank.balance(alice)
    assert balance["balance"] == 100_000 - sum(range(100, 105)) == sum(line["amount"] for line in lines)
    assert balance["limits"]["day"]["used"] == sum(range(100, 105))  # Class II: to an unbound account

    bad = await alice.client.call("com.bank.account.statement", {"cursor": "x1"})
    assert bad.code == 4001
    async with bank.env.banking.sessions.db.session() as s:
        assert int((await s.exec(select(func.sum(LedgerPosting.amount)))).one()) == 0


async def test_payee_must_be_an_e_account_holder_of_this_bank(bank: Any) -> None:
    alice = await bank.holder(funds=1_000)
    missing = await bank.send(alice, 10, to={"user_id": "u_0000000000000000"})
    assert (missing.code, missing.error["code"]) == (4001, "account_not_found")
    both = await bank.send(alice, 10, to={"user_id": alice.user_id, "bank": "B", "account": "12345678"})
    assert both.code == 4001
    to_self = await bank.send(alice, 10, to={"user_id": alice.user_id})
    assert to_self.code == 4001
