"""Limits by account class at their boundaries (limit passes, limit + 1 fen fails), across the
bank's day and year rollover in Asia/Shanghai (an injected clock), and after a void."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from gateway_support import env_settings, start

from mpaas.banking.ledger.errors import BalanceCapExceeded
from mpaas.banking.transfers.limits import DEFAULT_CLASSES, ClassLimits
from mpaas.settings import Settings

SHANGHAI = ZoneInfo("Asia/Shanghai")


def shanghai(*parts: int) -> float:
    return datetime(*parts, tzinfo=SHANGHAI).timestamp()  # type: ignore[misc]


def refused(result: Any, code: str) -> bool:
    return result.code == 1001 and result.error["code"] == code


def test_the_defaults_are_the_pboc_limits() -> None:
    assert DEFAULT_CLASSES["II"] == ClassLimits(day_out=1_000_000, year_out=20_000_000, bound_exempt=True)
    assert DEFAULT_CLASSES["III"] == ClassLimits(day_out=200_000, year_out=5_000_000, balance_cap=200_000)


async def test_class_ii_daily_limit_rolls_over_at_midnight_in_shanghai(bank: Any) -> None:
    bank.env.banking.clock.fixed = shanghai(2026, 12, 31, 23, 59, 59)  # 15:59:59 UTC
    alice, bob = await bank.holder(funds=3_000_000), await bank.holder()
    assert (await bank.send(alice, 1_000_000, to={"user_id": bob.user_id})).ok
    assert refused(await bank.send(alice, 1, to={"user_id": bob.user_id}), "transfer_limit_exceeded")
    own_card = {"bank": "Other Bank", "account": alice.card, "name": "me"}  # bound: not counted
    assert (await bank.send(alice, 500, to=own_card)).ok
    bank.env.banking.clock.fixed = shanghai(2027, 1, 1, 0, 0, 0)
    assert (await bank.send(alice, 1_000_000, to={"user_id": bob.user_id})).ok
    assert refused(await bank.send(alice, 1, to={"user_id": bob.user_id}), "transfer_limit_exceeded")
    limits = (await bank.balance(alice))["limits"]
    assert (limits["day"]["period"], limits["day"]["used"], limits["year"]["used"]) == (
        "2027-01-01",
        1_000_000,
        1_000_000,
    )


async def test_class_iii_balance_cap_and_daily_limit(bank: Any) -> None:
    bank.env.banking.clock.fixed = shanghai(2026, 12, 3, 10, 0, 0)
    alice, carol = await bank.holder(funds=1_000_000), await bank.holder(account_class="III")
    assert (await bank.send(alice, 200_000, to={"user_id": carol.user_id})).ok
    assert refused(await bank.send(alice, 1, to={"user_id": carol.user_id}), "balance_cap_exceeded")
    with pytest.raises(BalanceCapExceeded):
        await bank.fund(carol.user, 1)
    assert (await bank.send(carol, 200_000, to={"user_id": alice.user_id})).ok
    await bank.fund(carol.user, 1)
    assert refused(await bank.send(carol, 1, to={"user_id": alice.user_id}), "transfer_limit_exceeded")
    bank.env.banking.clock.fixed = shanghai(2026, 12, 4, 0, 0, 0)
    assert (await bank.send(carol, 1, to={"user_id": alice.user_id})).ok


@pytest.fixture
async def env(
    aiohttp_client: Any, make_settings: Callable[..., Settings], tmp_path: Path, request: Any
) -> Any:
    """The banking app; a test marked ``small_limits`` gets Class II limits small enough to use up."""
    overrides = {}
    if request.node.get_closest_marker("small_limits"):
        path = tmp_path / "limits.yaml"
        path.write_text("classes:\n  II: {day_out_fen: 150, year_out_fen: 250, bound_exempt: true}\n")
        overrides["banking_limits_file"] = str(path)
    return await start(aiohttp_client, env_settings(make_settings, **overrides))


@pytest.mark.small_limits
async def test_yearly_limit_rollover_and_a_void_gives_the_amount_back(bank: Any) -> None:
    clock = bank.env.banking.clock
    clock.fixed = shanghai(2026, 12, 30, 12, 0, 0)
    alice, bob = await bank.holder(funds=10_000), await bank.holder()
    assert (await bank.send(alice, 100, to={"user_id": bob.user_id})).ok
    clock.fixed = shanghai(2026, 12, 31, 12, 0, 0)
    assert (await bank.send(alice, 100, to={"user_id": bob.user_id})).ok
    clearing = bank.transfers.clearing
    clearing.behaviour = "never"  # the answer comes when the test gives it
    elsewhere = {"bank": "Third Bank", "account": "6217000000000001", "name": "Li"}
    pending = await bank.send(alice, 50, to=elsewhere)
    assert (pending.ok, pending.result["status"]) == (True, "pending")
    assert refused(
        await bank.send(alice, 1, to={"user_id": bob.user_id}), "transfer_limit_exceeded"
    )  # 250 used
    assert await clearing.answer_now(clearing.held[0], False) == "voided"  # the 50 come back
    got = await alice.client.call("com.bank.transfer.get", {"transfer_id": pending.result["transfer_id"]})
    assert got.result["status"] == "voided"
    clearing.behaviour = "accept"
    assert (await bank.send(alice, 50, to={"user_id": bob.user_id})).ok
    assert refused(await bank.send(alice, 1, to={"user_id": bob.user_id}), "transfer_limit_exceeded")
    clock.fixed = shanghai(2027, 1, 1, 0, 0, 0)
    assert (await bank.send(alice, 100, to={"user_id": bob.user_id})).ok
    assert (await bank.balance(alice))["balance"] == 10_000 - 350
