"""The decision centre: four eyes, scenes and fail modes, list precedence and CSV import,
and the hit-rate drift alert."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import insert

from mpaas.appkeys import DB
from mpaas.banking.risk.counters import CounterStore
from mpaas.banking.risk.decision import RiskContext
from mpaas.banking.risk.engine import CelRiskEngine
from mpaas.banking.risk.models import RiskDecision
from mpaas.banking.risk.monitoring import RiskMetrics, check_drift
from mpaas.banking.risk.redis_counters import RedisCounterStore
from tests_support import assert_error, free_port

YUAN = 100
RULES = "/api/v1/risk/rulesets"
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
MakeTransfer = Callable[..., RiskContext]
Headers = dict[str, str]


async def test_activation_needs_a_second_person_and_every_step_is_audited(
    client: TestClient,  # type: ignore[type-arg]
    desk: Any,
    token_factory: Callable[[str], Any],
    engine: CelRiskEngine,
    transfer: MakeTransfer,
) -> None:
    alice, bob = await desk.officers()
    path = await desk.draft(desk.doc(("big", "txn.amount >= 100000", 100)), alice)
    early = await client.post(f"{path}/activate", headers=bob)
    assert early.status == 409 and (await early.json())["error"]["code"] == "invalid_review"
    assert (await client.post(f"{path}/submit", headers=alice)).status == 200
    for step in ("approve", "activate"):
        own = await client.post(f"{path}/{step}", headers=alice)
        assert own.status == 403, step
        assert_error(await own.json(), "four_eyes")
    assert (await client.post(f"{path}/approve", headers=bob)).status == 200
    assert (await engine.decide("transfer", transfer("t0", 2000 * YUAN))).ruleset_version.startswith(
        "transfer@default"
    )
    assert (await client.post(f"{path}/activate", headers=bob)).status == 200
    decision = await engine.decide("transfer", transfer("t1", 2000 * YUAN))
    assert (decision.ruleset_version, decision.action) == ("transfer@1", "deny")

    await desk.activate(
        desk.doc(("big", "txn.amount >= 200000", 100), ("tiny", "txn.amount < 100", 5)), alice, bob
    )
    diff = await (await client.get(f"{RULES}/transfer/1/diff/2", headers=alice)).json()
    assert [r["name"] for r in diff["added"]] == ["tiny"] and diff["removed"] == []
    assert diff["changed"][0]["fields"]["expr"]["to"] == "txn.amount >= 200000"
    history = await (await client.get(f"{RULES}/transfer/1/history", headers=alice)).json()
    assert [h["action"] for h in history["items"]] == [
        "risk.ruleset.draft",
        "risk.ruleset.submit",
        "risk.ruleset.approve",
        "risk.ruleset.activate",
    ]
    listed = await (await client.get(f"{RULES}?scene=transfer", headers=alice)).json()
    assert [(v["version"], v["status"]) for v in listed["items"]] == [(2, "active"), (1, "retired")]
    # a version never changes: the retired one still holds its document
    old = await (await client.get(f"{RULES}/transfer/1", headers=alice)).json()
    assert old["document"]["rules"][0]["expr"] == "txn.amount >= 100000"


@sqlite_only
async def test_decide_answers_other_systems_per_scene(
    client: TestClient,  # type: ignore[type-arg]
    desk: Any,
    admin_headers: Headers,
    token_factory: Callable[[str], Any],
) -> None:
    context = {
        "txn": {"id": "bind-1"},
        "user": {"id": "u_1"},
        "device": {"id": "d_9", "rooted": True, "emulator": True, "first_seen_days": 0},
    }
    resp = await client.post(
        "/api/v1/risk/decide", json={"scene": "device_binding", "context": context}, headers=admin_headers
    )
    assert resp.status == 200, await resp.text()
    out = await resp.json()
    # emulator (80) and rooted (50): 130 ≥ deny; reasons largest first
    assert (out["action"], out["score"]) == ("deny", 130.0)
    assert [r["rule"] for r in out["reasons"]] == ["emulator", "rooted_device"]
    assert len(out["id"]) == 32 and out["ruleset_version"].startswith("device_binding@default-")

    for body, code in (
        ({"scene": "teleport", "context": context}, "invalid_ruleset"),
        ({"scene": "login", "context": {"txn": {"id": ["x"]}}}, "validation_error"),
        ({"scene": "login", "context": {"wallet": {}}}, "validation_error"),
    ):
        bad = await client.post("/api/v1/risk/decide", json=body, headers=admin_headers)
        assert bad.status == 400, body
        assert_error(await bad.json(), code)
    analyst = {"Authorization": f"Bearer {await token_factory('analyst')}"}
    denied = await client.post(
        "/api/v1/risk/decide", json={"scene": "login", "context": context}, headers=analyst
    )
    assert denied.status == 403


@sqlite_only
async def test_a_counter_outage_fails_closed_for_transfers_and_open_for_logins(
    engine_on: Callable[[CounterStore], CelRiskEngine], transfer: MakeTransfer
) -> None:
    engine = engine_on(RedisCounterStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5))
    try:
        money = await engine.decide("transfer", transfer("t1", 10 * YUAN))
        login = await engine.decide("login", transfer("l1", 0))
    finally:
        await engine.close()
    assert (money.action, [r.rule for r in money.reasons]) == ("challenge", ["counters_unavailable"])
    assert login.action == "allow" and login.reasons == ()


@sqlite_only
async def test_deny_lists_win_and_allow_lists_skip_only_review(
    client: TestClient,  # type: ignore[type-arg]
    desk: Any,
    token_factory: Callable[[str], Any],
    engine: CelRiskEngine,
    transfer: MakeTransfer,
) -> None:
    alice, bob = await desk.officers()
    await desk.activate(
        desk.doc(("review_me", "txn.amount >= 1000", 70), ("deny_me", "txn.amount >= 500000", 100)),
        alice,
        bob,
    )
    csv = (
        "kind,entity,value,reason,expires_at\n"
        "allow,user,u_vip,private banking,\n"
        "deny,device,d_bad,emulator farm,2027-06-30T00:00:00Z\n"
        "allow,device,d_bad,,\n"
    )
    bad = csv + "deny,planet,mars,,\nallow,user,u_vip,,\nwatch,ip,203.0.113.9,,yesterday\n"
    refused = await client.post("/api/v1/risk/lists/import", json={"csv": bad}, headers=alice)
    assert refused.status == 400
    message = (await refused.json())["error"]["message"]
    assert "line 5: entity 'planet'" in message and "line 6: repeats line 2" in message
    assert "line 7: expires_at 'yesterday'" in message
    assert (await (await client.get("/api/v1/risk/lists", headers=alice)).json())["items"] == []
    imported = await client.post("/api/v1/risk/lists/import", json={"csv": csv}, headers=alice)
    assert (imported.status, await imported.json()) == (201, {"imported": 3})

    plain = await engine.decide("transfer", transfer("t1", 20 * YUAN))
    vip = await engine.decide("transfer", transfer("t2", 20 * YUAN, user="u_vip"))
    vip_big = await engine.decide("transfer", transfer("t3", 6000 * YUAN, user="u_vip"))
    both = await engine.decide("transfer", transfer("t4", 1 * YUAN, user="u_vip", device="d_bad"))
    assert plain.action == "review"
    assert vip.action == "allow" and vip.reasons[-1].rule == "allow_list"  # allow skips review
    assert vip_big.action == "deny"  # ... never a deny
    assert (both.action, [r.rule for r in both.reasons]) == ("deny", ["deny_list_device"])  # deny list first


@sqlite_only
async def test_a_rule_whose_hit_rate_moves_three_sigma_raises_the_alert(
    client: TestClient,  # type: ignore[type-arg]
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = datetime(2027, 1, 15, 12, tzinfo=UTC)
    rows = []
    for hour in range(1, 7 * 24 + 1):  # the baseline: 1 hit in 20 (plus or minus one) per hour
        hits = 1 + hour % 2
        for i in range(20):
            rows.append(_row(now - timedelta(hours=hour, minutes=i), "hit" if i < hits else "miss"))
    for i in range(20):  # the last hour: 10 in 20
        rows.append(_row(now - timedelta(minutes=50) + timedelta(seconds=i), "hit" if i < 10 else "miss"))
    async with client.app[DB].write() as s:
        await (await s.connection()).execute(insert(RiskDecision), rows)
    metrics = RiskMetrics()
    with caplog.at_level(logging.WARNING, logger="mpaas.banking.risk"):
        found = await check_drift(client.app[DB], now, metrics)
    assert [(d.rule, d.rate) for d in found] == [("velocity", 0.5)]
    assert metrics.alerts == {("transfer", "velocity"): 1, ("transfer", "steady"): 0}
    assert "3 sigma" in caplog.text
    calm = await check_drift(client.app[DB], now - timedelta(hours=2), metrics)
    assert calm == [] and metrics.alerts[("transfer", "velocity")] == 0


_n = 0


def _row(at: datetime, outcome: str) -> dict[str, Any]:
    global _n
    _n += 1
    return {
        "id": f"{_n:032x}",
        "scene": "transfer",
        "subject": None,
        "ruleset_version": "transfer@1",
        "action": "allow",
        "score": 0.0,
        "reasons": [],
        "outcomes": {"velocity": outcome, "steady": "miss"},
        "inputs": {},
        "created_at": at,
        "model_version": None,
    }
