"""The CEL engine on a real database: velocity counters (SQL, and Redis when
MPAAS_TEST_REDIS_URL is set), features, stored decisions, and rule set versions taking
effect in a running engine."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from mpaas.appkeys import DB, SETTINGS
from mpaas.banking.risk.counters import WINDOWS, CounterStore, Observation, SqlCounterStore
from mpaas.banking.risk.decision import RiskContext
from mpaas.banking.risk.engine import CelRiskEngine
from mpaas.banking.risk.redis_counters import RedisCounterStore
from mpaas.banking.risk.wiring import make_risk_engine
from tests_support import free_port

YUAN = 100
REDIS_URL = os.environ.get("MPAAS_TEST_REDIS_URL", "")
BEIJING = {"lat": 39.90, "lon": 116.40}
MakeTransfer = Callable[..., RiskContext]
MakeEngine = Callable[[CounterStore], CelRiskEngine]
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def rules(decision: Any) -> list[str]:
    """The rules a decision names, without the shipped model's contribution (its own tests
    are in test_models_*.py): these tests are about the features the rules read."""
    return [r.rule for r in decision.reasons if not r.rule.startswith("model_")]


async def vel(engine: CelRiskEngine, transfer: MakeTransfer, txn: str = "probe", **kw: Any) -> dict[str, Any]:
    decision = await engine.decide("transfer", transfer(txn, 10 * YUAN, **kw))
    return dict(decision.values["vel"]["user"]) | {"device_1h": decision.values["vel"]["device"]["count_1h"]}


async def exercise_counters(engine: CelRiskEngine, clock: Any, transfer: MakeTransfer) -> None:
    """Counts per user and device, once per transaction, sliding out of each window in turn."""
    for i in range(10):
        await engine.committed("transfer", transfer(f"t{i}", 100 * YUAN))
        clock.now += 60
    await engine.committed("transfer", transfer("t9", 100 * YUAN))  # a retried commit counts once
    await engine.committed("transfer", transfer("t_other", 100 * YUAN, user="u_2"))  # same device

    seen = await vel(engine, transfer)
    assert (seen["count_1h"], seen["count_24h"], seen["count_30d"], seen["device_1h"]) == (10, 10, 10, 11)
    assert seen["avg_30d"] == 100 * YUAN
    decision = await engine.decide("transfer", transfer("probe", 10 * YUAN))
    assert rules(decision) == ["user_velocity_1h"] and decision.action == "challenge"

    clock.now += 3600 + 600  # past the 1-hour window (and its 5-minute bucket)
    seen = await vel(engine, transfer)
    assert (seen["count_1h"], seen["count_24h"]) == (0, 10)
    clock.now += 25 * 3600
    seen = await vel(engine, transfer)
    assert (seen["count_24h"], seen["count_30d"]) == (0, 10)
    clock.now += 31 * 86400
    assert (await vel(engine, transfer))["avg_30d"] is None


@sqlite_only
@pytest.mark.skipif(not REDIS_URL, reason="MPAAS_TEST_REDIS_URL is not set")
async def test_redis_counters_count_non_ascii_ids(engine_on: MakeEngine, transfer: MakeTransfer) -> None:
    """Keys are sent on the ASCII fast path when they can be: a user id in Chinese takes the
    other path and counts the same."""
    engine = engine_on(RedisCounterStore(REDIS_URL, f"test-{secrets.token_hex(4)}:"))
    try:
        for i in range(3):
            await engine.committed("transfer", transfer(f"t{i}", 100 * YUAN, user="用户-ü"))
        await engine.committed("transfer", transfer("t_ascii", 100 * YUAN, user="u_ascii"))
        assert (await vel(engine, transfer, user="用户-ü"))["count_1h"] == 3
        assert (await vel(engine, transfer, user="u_ascii"))["count_1h"] == 1
    finally:
        await engine.close()


@sqlite_only
@pytest.mark.skipif(not REDIS_URL, reason="MPAAS_TEST_REDIS_URL is not set")
async def test_redis_counter_hashes_stay_within_their_windows(
    engine: CelRiskEngine, engine_on: MakeEngine, clock: Any, transfer: MakeTransfer
) -> None:
    """Each key is one hash of buckets and running totals; a week of transfers every 20
    minutes, then a month of silence, leave no more fields in it than its windows reach (a
    bucket more each, and each width's totals), and every window counts what the SQL store
    counts for the same transfers."""
    prefix = f"test-{secrets.token_hex(4)}:"
    store = RedisCounterStore(REDIS_URL, prefix)
    on_redis = engine_on(store)
    try:
        for i in range(7 * 72):
            for counting in (engine, on_redis):
                await counting.committed("transfer", transfer(f"t{i}", (i % 7 + 1) * YUAN))
            clock.now += 1200
        bound = sum(2 * (window // width + 2) + 3 for window, width in WINDOWS.values())
        for idle in (0, 40 * 86400):
            clock.now += idle
            await on_redis.committed("transfer", transfer(f"late{idle}", 3 * YUAN))
            await engine.committed("transfer", transfer(f"late{idle}", 3 * YUAN))
            seen = await vel(on_redis, transfer)
            assert seen == await vel(engine, transfer)
            assert seen["count_30d"] == (7 * 72 + 1 if idle == 0 else 1)
            fields = await store.client.call("HLEN", f"{prefix}risk:v:transfer/user:u_1")
            assert 0 < fields <= bound, (idle, fields)
            clock.now -= 240  # a process whose clock is 4 minutes behind reads the same windows
            assert await vel(on_redis, transfer) == await vel(engine, transfer)
            clock.now += 240
    finally:
        await on_redis.close()


@sqlite_only
async def test_a_counter_store_outage_fails_closed_to_challenge(
    engine_on: MakeEngine, transfer: MakeTransfer
) -> None:
    engine = engine_on(RedisCounterStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5))
    try:
        decision = await engine.decide("transfer", transfer("t1", 10 * YUAN))
    finally:
        await engine.close()
    assert decision.action == "challenge"
    assert rules(decision) == ["counters_unavailable"]
    assert "vel" not in decision.values


@sqlite_only
async def test_travel_and_history_features_drive_their_rules(
    engine: CelRiskEngine, clock: Any, transfer: MakeTransfer
) -> None:
    for i in range(3):
        await engine.committed("transfer", transfer(f"t{i}", 200 * YUAN))
    clock.now += 600
    far = await engine.decide("transfer", transfer("far", 10 * YUAN, geo=BEIJING))
    assert far.values["geo"]["km_from_last"] == pytest.approx(1067, abs=15)
    assert rules(far) == ["impossible_travel"]
    clock.now += 3 * 3600  # the same distance over three hours is a flight, not fraud
    later = await engine.decide("transfer", transfer("later", 10 * YUAN, geo=BEIJING))
    assert rules(later) == [] and later.action == "allow"
    large = await engine.decide("transfer", transfer("large", 2500 * YUAN))
    assert rules(large) == ["amount_vs_history"]
    new_device = await engine.decide(
        "transfer", transfer("nd", 5000 * YUAN, user="u_new", device="d_new", first_seen_days=0.1)
    )
    assert rules(new_device) == ["new_device_large_amount"]


async def test_every_decision_is_stored_with_the_values_it_read(
    engine: CelRiskEngine,
    client: TestClient,  # type: ignore[type-arg]
    admin_headers: dict[str, str],
    transfer: MakeTransfer,
) -> None:
    decision = await engine.decide("transfer", transfer("t_stored", 600000, first_seen_days=0.5))
    assert decision.action == "challenge"
    resp = await client.get(f"/api/v1/risk/decisions/{decision.id}", headers=admin_headers)
    assert resp.status == 200
    stored = await resp.json()
    assert stored["inputs"] == decision.values
    # only what the rules (and the model's features) read is kept
    assert stored["inputs"]["txn"]["amount"] == 600000 and "id" not in stored["inputs"]["txn"]
    assert stored["inputs"]["device"]["first_seen_days"] == 0.5 and "model" not in stored["inputs"]["device"]
    assert stored["outcomes"]["new_device_large_amount"] == "hit"
    assert stored["outcomes"]["amount_vs_history"] == "miss"
    # the rule's 60, plus the shipped model's weighted score (its own tests say what it is)
    assert (stored["action"], stored["score"], stored["ruleset_version"]) == (
        "challenge",
        decision.score,
        decision.ruleset_version,
    )
    assert 60.0 <= stored["score"] < 100.0 and stored["model_version"] is not None
    by_subject = await client.get("/api/v1/risk/decisions?subject=t_stored", headers=admin_headers)
    assert [d["id"] for d in (await by_subject.json())["items"]] == [decision.id]


async def activate(
    client: TestClient,  # type: ignore[type-arg]
    body: dict[str, Any],
    author: dict[str, str],
    second: str,
) -> str:
    """Draft and submit as ``author``, approve and activate as a second admin (four eyes)."""
    resp = await client.post("/api/v1/risk/rulesets", json=body, headers=author)
    assert resp.status == 201, await resp.text()
    path = f"/api/v1/risk/rulesets/{body['scene']}/{(await resp.json())['version']}"
    other = {"Authorization": f"Bearer {second}"}
    for step, headers in (("submit", author), ("approve", other), ("activate", other)):
        moved = await client.post(f"{path}/{step}", headers=headers)
        assert moved.status == 200, await moved.text()
    return str((await moved.json())["label"])


async def test_a_new_rule_set_version_takes_effect_in_the_running_engine(
    engine: CelRiskEngine,
    client: TestClient,  # type: ignore[type-arg]
    admin_headers: dict[str, str],
    token_factory: Callable[[str], Any],
    transfer: MakeTransfer,
) -> None:
    before = await engine.decide("transfer", transfer("t1", 100 * YUAN))
    assert before.action == "allow" and before.ruleset_version.startswith("transfer@default-")
    body = {
        "scene": "transfer",
        "thresholds": {"challenge": 30, "deny": 60},
        "rules": [{"name": "over_fifty_yuan", "expr": "txn.amount > 5000", "weight": 60, "message": "big"}],
    }
    assert await activate(client, body, admin_headers, await token_factory("admin")) == "transfer@1"

    after = await engine.decide("transfer", transfer("t2", 100 * YUAN))
    assert (after.action, after.ruleset_version, after.values) == (
        "deny",
        "transfer@1",
        {"txn": {"amount": 10000}},
    )

    body["thresholds"] = {"challenge": 30, "deny": 90}
    assert await activate(client, body, admin_headers, await token_factory("admin")) == "transfer@2"
    assert (await engine.decide("transfer", transfer("t3", 100 * YUAN))).action == "challenge"
    listed = await (await client.get("/api/v1/risk/rulesets?scene=transfer", headers=admin_headers)).json()
    assert [(v["version"], v["status"]) for v in listed["items"]] == [(2, "active"), (1, "retired")]


@sqlite_only
async def test_a_counterparty_on_the_deny_list_is_denied_until_the_entry_expires(
    engine: CelRiskEngine,
    client: TestClient,  # type: ignore[type-arg]
    admin_headers: dict[str, str],
    transfer: MakeTransfer,
) -> None:
    for value, expires in (("c_mule", "2027-02-01T00:00:00Z"), ("c_old", "2027-01-01T00:00:00Z")):
        entry = {
            "kind": "deny",
            "entity": "counterparty",
            "value": value,
            "reason": "mule",
            "expires_at": expires,
        }
        assert (await client.post("/api/v1/risk/lists", json=entry, headers=admin_headers)).status == 201
    mule = await engine.decide("transfer", transfer("t1", 10 * YUAN, counterparty="c_mule"))
    # the deny list short-circuits: no rule runs
    assert (mule.action, rules(mule)) == ("deny", ["deny_list_counterparty"])
    expired = await engine.decide("transfer", transfer("t2", 10 * YUAN, counterparty="c_old"))
    assert expired.action == "allow" and expired.values["lists"]["deny"]["counterparty"] is False


async def test_warm_loads_the_model_before_the_first_decision(
    client: TestClient,  # type: ignore[type-arg]
    clock: Any,
    transfer: MakeTransfer,
) -> None:
    """Regression: the first transfer after a start parsed the shipped model inside its own
    model deadline and, on a loaded machine, failed the scene closed (challenge)."""
    engine = make_risk_engine(client.app[SETTINGS], client.app[DB], clock=clock, poll_seconds=0.0)
    assert isinstance(engine, CelRiskEngine)
    scorer = engine.scorer
    assert scorer is not None and scorer.loads == 0  # type: ignore[attr-defined]
    await engine.warm(["transfer", "login"])
    assert scorer.loads == 1  # type: ignore[attr-defined]  # the transfer rules name a model
    decision = await engine.decide("transfer", transfer("t_warm", 10 * YUAN))
    assert "model" not in decision.values["_engine"].get("degraded", []), decision
    assert scorer.loads == 1  # type: ignore[attr-defined]  # the decision parsed nothing
    await engine.close()


async def exercise_counting_on_decide(engine: CelRiskEngine, clock: Any, transfer: MakeTransfer) -> None:
    """``decide(..., count=True)``: an allow is counted by the decision itself and handed back
    for release; a challenge gives its count (and the place it moved) back at once."""
    first = await engine.decide("transfer", transfer("t1", 10 * YUAN), count=True)
    assert first.action == "allow" and first.reservation is not None
    assert (await vel(engine, transfer))["count_1h"] == 1
    await engine.release(first)
    await engine.release(first)  # a second release gives back nothing more
    assert (await vel(engine, transfer))["count_1h"] == 0
    kept = await engine.decide("transfer", transfer("t2", 10 * YUAN), count=True)
    assert kept.action == "allow"
    again = await engine.decide("transfer", transfer("t2", 10 * YUAN), count=True)  # a retry
    assert again.reservation is None  # counted once already: nothing of its own to give back
    await engine.committed("transfer", transfer("t2", 10 * YUAN))  # a late committed() adds nothing
    assert (await vel(engine, transfer))["count_1h"] == 1
    clock.now += 600
    far = await engine.decide("transfer", transfer("far", 10 * YUAN, geo=BEIJING), count=True)
    assert rules(far) == ["impossible_travel"] and far.reservation is None
    assert (await vel(engine, transfer))["count_1h"] == 1  # the challenge was given back
    clock.now += 60  # and so was its place: Shanghai again is no journey
    near = await engine.decide("transfer", transfer("near", 10 * YUAN), count=True)
    assert rules(near) == [] and near.values["geo"]["km_from_last"] == pytest.approx(0, abs=1)


#: What both counter stores must do alike: count once and slide; count on decide and give back.
EXERCISES = {"count_once_and_slide": exercise_counters, "count_on_decide": exercise_counting_on_decide}


@pytest.mark.parametrize("exercise", list(EXERCISES))
async def test_sql_counters(engine: CelRiskEngine, clock: Any, transfer: MakeTransfer, exercise: str) -> None:
    await EXERCISES[exercise](engine, clock, transfer)


@sqlite_only
@pytest.mark.skipif(not REDIS_URL, reason="MPAAS_TEST_REDIS_URL is not set")
@pytest.mark.parametrize("exercise", list(EXERCISES))
async def test_redis_counters(
    engine_on: MakeEngine, clock: Any, transfer: MakeTransfer, exercise: str
) -> None:
    engine = engine_on(RedisCounterStore(REDIS_URL, f"test-{secrets.token_hex(4)}:"))
    try:
        await EXERCISES[exercise](engine, clock, transfer)
    finally:
        await engine.close()


@pytest.mark.parametrize("store_kind", ["sql", "redis"])
async def test_transfers_decided_at_once_see_each_other(client: TestClient, store_kind: str) -> None:  # type: ignore[type-arg]
    """The read and the count are one step: twelve transfers of one user decided at the same
    moment see 0, 1, ... 11 earlier ones (read, then counted, they all saw 0). On Redis one
    script; in SQL one transaction whose first write locks the key's rows (PostgreSQL, across
    processes too) or takes the write lock (SQLite)."""
    store: CounterStore
    if store_kind == "redis":
        if not REDIS_URL:
            pytest.skip("MPAAS_TEST_REDIS_URL is not set")
        store = RedisCounterStore(REDIS_URL, f"test-{secrets.token_hex(4)}:")
    else:
        store = SqlCounterStore(client.app[DB])
    user, device, now = "transfer/user:u_burst", "transfer/device:d_burst", 1_764_000_000.0
    try:
        burst = await asyncio.gather(
            *(
                store.read_and_count(
                    [user, device],
                    now + i,
                    True,
                    Observation(f"transfer/b{i}", (user, device), 100, now + i, (31.2, 121.5)),
                )
                for i in range(12)
            )
        )
        after = await store.read([user, device], now + 20, True)
    finally:
        await store.close()
    assert sorted(counts[user].count["1h"] for counts, _ in burst) == list(range(12))
    assert sorted(counts[device].amount["1h"] for counts, _ in burst) == [100 * i for i in range(12)]
    assert all(reservation is not None for _, reservation in burst)
    assert (after[user].count["1h"], after[device].count["24h"]) == (12, 12)
    # each saw the place the one before it left (the first saw none), never its own
    seen = sorted((c[user].place is None, c[user].place.at if c[user].place else 0) for c, _ in burst)
    assert seen[-1] == (True, 0) and all(not gone for gone, _ in seen[:-1])
