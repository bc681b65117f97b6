"""Fixtures of the risk tests: an engine on the running app's database, with a clock the
test moves, and transfer contexts."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from mpaas.appkeys import DB, SETTINGS
from mpaas.banking.risk.counters import CounterStore
from mpaas.banking.risk.decision import RiskContext
from mpaas.banking.risk.engine import CelRiskEngine
from mpaas.banking.risk.scenes import SCENES
from mpaas.banking.risk.wiring import make_risk_engine
from mpaas.settings import Settings
from mpaas.storage.migrate import upgrade_async

START = 1_800_000_000.0  # 2027-01-15, a fixed clock: no wall-clock windows in tests
SHANGHAI = {"lat": 31.23, "lon": 121.47}
BEIJING = {"lat": 39.90, "lon": 116.40}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per test process; each test gets a copy (migrating costs ~1.5 s)."""
    folder = tmp_path_factory.mktemp("risk-template")
    settings = Settings.from_env({}, {"data_dir": folder, "database_url": f"sqlite:///{folder / 'mpaas.db'}"})
    asyncio.run(upgrade_async(settings))
    return folder / "mpaas.db"


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Settings:
    """The app's settings on a copy of a migrated database (overrides tests/conftest.py)."""
    if backend != "sqlite":
        return make_settings(auto_migrate=False)  # the per-test PostgreSQL clone is migrated
    copy = tmp_path / "data" / "mpaas.db"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(request.getfixturevalue("sqlite_template"), copy)
    return make_settings(database_url=f"sqlite:///{copy}", auto_migrate=False)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def engine(client: TestClient, clock: Clock) -> AsyncIterator[CelRiskEngine]:  # type: ignore[type-arg]
    made = make_risk_engine(client.app[SETTINGS], client.app[DB], clock=clock, poll_seconds=0.0)
    assert isinstance(made, CelRiskEngine)
    await made.warm(SCENES)  # as the server does at start-up
    yield made
    await made.close()


@pytest.fixture
def engine_on(client: TestClient, clock: Clock) -> Callable[[CounterStore], CelRiskEngine]:  # type: ignore[type-arg]
    """An engine on the given counter store (the caller closes it)."""

    def make(counters: CounterStore) -> CelRiskEngine:
        return CelRiskEngine(client.app[DB], counters, clock=clock, poll_seconds=0.0)

    return make


@pytest.fixture
def transfer() -> Callable[..., RiskContext]:
    return make_transfer


def make_transfer(
    txn_id: str,
    amount: int,
    *,
    user: str = "u_1",
    device: str = "d_1",
    counterparty: str = "c_shop",
    first_seen_days: float = 200.0,
    geo: dict[str, Any] | None = None,
) -> RiskContext:
    return RiskContext(
        txn={
            "id": txn_id,
            "amount": amount,
            "currency": "CNY",
            "from_account": f"acct_{user}",
            "to_account": f"acct_{counterparty}",
            "counterparty": counterparty,
            "external": False,
        },
        user={"id": user, "tier": "e_account"},
        device={"id": device, "model": "Pixel 8", "rooted": False, "first_seen_days": first_seen_days},
        net={"ip": "203.0.113.7", "carrier": "CMCC"},
        geo=dict(SHANGHAI if geo is None else geo),
    )


RULES = "/api/v1/risk/rulesets"


class Desk:
    """Two admins (two actors) and the four-eyes steps, for tests that need rule sets."""

    def __init__(self, client: TestClient, token_factory: Callable[[str], Any]) -> None:  # type: ignore[type-arg]
        self.client, self.token_factory = client, token_factory

    @staticmethod
    def doc(*rules: tuple[str, str, float], scene: str = "transfer", **extra: Any) -> dict[str, Any]:
        return {
            "scene": scene,
            "thresholds": {"challenge": 30, "review": 60, "deny": 100},
            "rules": [{"name": n, "expr": e, "weight": w, "message": n} for n, e, w in rules],
        } | extra

    async def officers(self) -> tuple[dict[str, str], dict[str, str]]:
        first, second = await self.token_factory("admin"), await self.token_factory("admin")
        return {"Authorization": f"Bearer {first}"}, {"Authorization": f"Bearer {second}"}

    async def draft(self, body: dict[str, Any], who: dict[str, str]) -> str:
        resp = await self.client.post(RULES, json=body, headers=who)
        assert resp.status == 201, await resp.text()
        out = await resp.json()
        assert out["status"] == "draft"
        return f"{RULES}/{out['scene']}/{out['version']}"

    async def activate(self, body: dict[str, Any], a: dict[str, str], b: dict[str, str]) -> str:
        path = await self.draft(body, a)
        for step, who in (("submit", a), ("approve", b), ("activate", b)):
            assert (await self.client.post(f"{path}/{step}", headers=who)).status == 200
        return path


@pytest.fixture
def desk(client: TestClient, token_factory: Callable[[str], Any]) -> Desk:  # type: ignore[type-arg]
    return Desk(client, token_factory)
