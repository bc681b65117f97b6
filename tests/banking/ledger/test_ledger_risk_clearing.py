"""Risk answers (allow, challenge with step-up, deny) and the clearing system's answers
(late, twice, never) for transfers to other banks."""

from __future__ import annotations

from typing import Any

from gateway_support import last_code

ELSEWHERE = {"bank": "Third Bank", "account": "6217000000000001", "name": "Li"}


async def test_deny_is_refused_stored_and_moves_nothing(bank: Any) -> None:
    alice, bob = await bank.holder(funds=10_000), await bank.holder()
    bank.risk.action = "deny"
    first = await bank.send(alice, 500, to={"user_id": bob.user_id}, key="denied-01")
    assert (first.code, first.error["code"]) == (1001, "transfer_denied")
    bank.risk.action = "allow"
    again = await bank.send(alice, 500, to={"user_id": bob.user_id}, key="denied-01")
    assert again.error == first.error  # the stored decision, not a second one
    assert len(bank.risk.decided) == 1 and bank.risk.committed_ids == []
    assert (await bank.balance(alice))["balance"] == 10_000


async def test_challenge_then_step_up_resumes_the_same_transfer_once(bank: Any) -> None:
    alice, bob = await bank.holder(funds=10_000), await bank.holder()
    bank.risk.action = "challenge"
    params = {"user_id": bob.user_id}
    held = await bank.send(alice, 700, to=params, key="challenged-1")
    assert (held.code, held.status, held.error["code"]) == (5000, 428, "risk_challenge_required")
    transfer_id = held.error["detail"]["transfer_id"]
    retried = await bank.send(alice, 700, to=params, key="challenged-1")  # a retry: same hold, a new code
    assert (retried.code, retried.error["detail"]["transfer_id"]) == (5000, transfer_id)
    assert (await bank.balance(alice))["balance"] == 10_000
    got = await alice.client.call("com.bank.transfer.get", {"transfer_id": transfer_id})
    assert got.result["status"] == "awaiting_step_up"

    wrong = "000000" if last_code(bank.env) != "000000" else "111111"
    bad = await alice.client.call("com.bank.transfer.confirm", {"transfer_id": transfer_id, "code": wrong})
    assert (bad.code, bad.error["code"]) == (1001, "one_time_code_rejected")
    code = last_code(bank.env)
    done = await alice.client.call("com.bank.transfer.confirm", {"transfer_id": transfer_id, "code": code})
    assert (done.code, done.result["transfer_id"], done.result["status"]) == (1000, transfer_id, "posted")
    assert done.result["decision_id"].startswith("d_")
    twice = await alice.client.call("com.bank.transfer.confirm", {"transfer_id": transfer_id, "code": code})
    assert twice.result == done.result
    assert (await bank.send(alice, 700, to=params, key="challenged-1")).result == done.result
    assert (await bank.balance(alice))["balance"] == 10_000 - 700
    assert len(bank.risk.decided) == 1 and bank.risk.committed_ids == [transfer_id]


async def test_clearing_answers_twice_late_and_never(bank: Any) -> None:
    alice = await bank.holder(funds=10_000)
    clearing = bank.transfers.clearing
    clearing.behaviour = "twice"
    twice = await bank.send(alice, 1_000, to=ELSEWHERE)
    assert twice.result["status"] == "pending"
    await clearing.settled()
    assert [o[2] for o in clearing.outcomes] == ["posted", "ignored"]  # the second answer changes nothing

    clearing.behaviour = "never"
    never = await bank.send(alice, 2_000, to=ELSEWHERE)
    late = await bank.send(alice, 3_000, to=ELSEWHERE)
    assert (await bank.balance(alice))["available"] == 10_000 - 6_000
    clock = bank.env.banking.clock
    clock.fixed = clock() + bank.env.settings.banking_clearing_timeout_seconds + 1
    assert await bank.transfers.sweep() == 2  # both timed out: voided, money and limits back
    balance = await bank.balance(alice)
    assert (balance["available"], balance["pending_out"], balance["limits"]["day"]["used"]) == (
        9_000,
        0,
        1_000,
    )
    [held_never, held_late] = clearing.held
    assert held_never.transfer_id == never.result["transfer_id"]
    assert await clearing.answer_now(held_late, False) == "ignored"  # a late refusal: nothing to do
    # A late acceptance: the money left through the clearing system after the void; the bank
    # books it to its suspense account for investigation, once however often it is told.
    assert await clearing.answer_now(held_late, True) == "suspense"
    assert await clearing.answer_now(held_late, True) == "ignored"
    got = await alice.client.call("com.bank.transfer.get", {"transfer_id": late.result["transfer_id"]})
    assert got.result["status"] == "voided"
    assert (await bank.balance(alice))["balance"] == 9_000
    assert (await bank.transfers.sweep()) == 0
