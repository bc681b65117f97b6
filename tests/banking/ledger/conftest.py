"""Fixtures of the ledger and transfer tests: e-account holders with money, and a scripted risk engine.

``bank`` makes holders through the real gateway (register, open an e-account), funds them
through the transfers service's top-up, and sends signed transfers. ``risk`` is a tiny
RiskEngine that answers what the test says (the real CEL engine is tested on its own).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from gateway_support import Env, env_settings, open_account, register, start

from mpaas.banking.client import GatewayClient, GatewayResult
from mpaas.banking.models import BankUser
from mpaas.banking.risk.decision import Action, Decision, RiskContext
from mpaas.banking.transfers.service import TransferService
from mpaas.settings import Settings

_numbers = itertools.count(1)


def id_number(i: int) -> str:
    body = f"1101051949{i:07d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def card_number(i: int) -> str:
    body = f"622202{i:09d}"
    total = 0
    for k, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if k % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


@dataclass
class Holder:
    client: GatewayClient
    user: BankUser
    card: str

    @property
    def user_id(self) -> str:
        return self.user.public_id


@dataclass
class ScriptedRisk:
    """Answers ``action``; with ``gate`` set, each decision waits for it (an in-flight request)."""

    action: Action = "allow"
    gate: asyncio.Event | None = None
    decided: list[RiskContext] = field(default_factory=list)
    committed_ids: list[str] = field(default_factory=list)

    async def decide(self, scene: str, context: RiskContext) -> Decision:
        self.decided.append(context)
        if self.gate is not None:
            await self.gate.wait()
        return Decision("d_" + uuid.uuid4().hex[:12], self.action, 0.0, (), "test", {"scene": scene})

    async def committed(self, scene: str, context: RiskContext) -> None:
        self.committed_ids.append(str(context.txn["id"]))


@dataclass
class Bank:
    env: Env
    risk: ScriptedRisk

    @property
    def transfers(self) -> TransferService:
        assert self.env.banking.transfers is not None
        return self.env.banking.transfers

    async def holder(self, funds: int = 0, account_class: str | None = None) -> Holder:
        i = next(_numbers) * 1000 + secrets.randbelow(1000)
        client = self.env.client()
        login = await register(self.env, client, phone=f"+86139{i:08d}")
        opened = await open_account(client, id_number(i), card_number(i))
        assert opened.ok, opened.error
        user = await self.env.banking.users.find("bank", login["user_id"])
        if account_class is not None:
            await self.transfers.accounts.set_class(user, account_class)
        if funds:
            await self.fund(user, funds)
        return Holder(client, user, card_number(i))

    async def fund(self, user: BankUser, amount: int) -> None:
        await self.transfers.accounts.fund(user, amount, "fund_" + uuid.uuid4().hex, self.env.banking.clock())

    async def send(
        self, holder: Holder, amount: int, *, to: dict[str, Any], key: str | None = None, **extra: Any
    ) -> GatewayResult:
        params = {"idempotency_key": key or uuid.uuid4().hex, "amount": amount, "to": to, **extra}
        return await holder.client.call("com.bank.transfer.create", params)

    async def balance(self, holder: Holder) -> dict[str, Any]:
        result = await holder.client.call("com.bank.account.balance")
        assert result.ok, result.error
        return dict(result.result)


@pytest.fixture
def backend() -> str:
    """SQLite here, for the suite's time budget; a test of a PostgreSQL property (concurrency)
    parametrizes ``backend`` itself."""
    return "sqlite"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "small_limits: run the app with Class II limits small enough to use up"
    )


@pytest.fixture
async def env(aiohttp_client: Any, make_settings: Callable[..., Settings]) -> Env:
    """The banking app, with per-device and per-user rates no ledger test reaches: a storm of
    transfers from one holder (after the holder's own sign-up calls) passed the default burst
    of 20 when the machine ran fast, and was refused for ``rate_limited`` instead of funds."""
    settings = env_settings(make_settings, gateway_device_rate="10000/s", gateway_user_rate="10000/s")
    return await start(aiohttp_client, settings)


@pytest.fixture
def risk() -> ScriptedRisk:
    return ScriptedRisk()


@pytest.fixture
async def bank(env: Env, risk: ScriptedRisk) -> Bank:
    assert env.banking.transfers is not None
    env.banking.transfers.risk = risk
    return Bank(env, risk)
