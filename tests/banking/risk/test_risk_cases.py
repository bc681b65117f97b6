"""The decision centre around a decision: the model hook, cases and snoozes, shadow mode,
backtest and bit-identical replay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from mpaas.appkeys import DB
from mpaas.banking.risk import shadow as shadow_module
from mpaas.banking.risk.backtest import backtest, replay, same
from mpaas.banking.risk.cases import labels_for
from mpaas.banking.risk.counters import CounterStore
from mpaas.banking.risk.decision import RiskContext
from mpaas.banking.risk.engine import CelRiskEngine
from tests_support import assert_error

YUAN = 100
RULES = "/api/v1/risk/rulesets"
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
MakeTransfer = Callable[..., RiskContext]
Headers = dict[str, str]


class TinyModel:
    def __init__(self, score: float, delay: float = 0.0) -> None:
        self._score, self.delay = score, delay
        self.seen: list[Sequence[float | None]] = []

    name, version, features = "tiny", "3", ("txn.amount", "device.rooted", "vel.user.count_1h", "geo.nowhere")

    def score(self, values: Sequence[float | None]) -> float:
        self.seen.append(values)
        if self.delay:
            time.sleep(self.delay)  # in-process scoring overruns the deadline
        return self._score


class TinyScorer:
    def __init__(self, model: TinyModel) -> None:
        self.model = model

    async def active(self, scene: str, name: str) -> TinyModel | None:
        return self.model if (scene, name) == ("transfer", "tiny") else None


MODEL = {"name": "tiny", "weight": 100, "features": list(TinyModel.features)}


@sqlite_only
async def test_the_model_scores_within_its_deadline_and_rules_read_it(
    client: TestClient,  # type: ignore[type-arg]
    desk: Any,
    token_factory: Callable[[str], Any],
    transfer: MakeTransfer,
    clock: Any,
) -> None:
    alice, bob = await desk.officers()
    body = desk.doc(("model_high", "model.score > 0.5", 10), model=MODEL)
    await desk.activate(body, alice, bob)
    fast = TinyModel(0.8)
    engine = CelRiskEngine(
        client.app[DB],
        _sql(client),
        clock=clock,
        poll_seconds=0.0,
        scorer=TinyScorer(fast),
        model_deadline=0.05,
    )
    slow = CelRiskEngine(
        client.app[DB],
        _sql(client),
        clock=clock,
        poll_seconds=0.0,
        scorer=TinyScorer(TinyModel(0.8, delay=0.06)),
        model_deadline=0.05,
    )
    other_schema = TinyModel(0.8)
    other_schema.features = ("txn.amount",)  # type: ignore[assignment]
    mismatched = CelRiskEngine(
        client.app[DB], _sql(client), clock=clock, poll_seconds=0.0, scorer=TinyScorer(other_schema)
    )
    try:
        scored = await engine.decide("transfer", transfer("t1", 20 * YUAN))
        late = await slow.decide("transfer", transfer("t2", 20 * YUAN))
        refused = await mismatched.decide("transfer", transfer("t3", 20 * YUAN))
    finally:
        await mismatched.close()
        await engine.close()
        await slow.close()
    assert fast.seen == [[2000.0, 0.0, 0.0, None]]  # its own paths, in order; a missing one is None
    assert scored.score == pytest.approx(90.0) and scored.action == "review"
    assert [r.rule for r in scored.reasons] == ["model_tiny", "model_high"]  # 80 before 10
    assert scored.values["model"] == {"score": 0.8}  # what the rules read
    assert scored.values["_engine"]["model"] == {
        "name": "tiny",
        "version": "3",
        "score": 0.8,
        "weight": 100.0,
    }
    stored = await (await client.get(f"/api/v1/risk/decisions/{scored.id}", headers=alice)).json()
    assert stored["model_version"] == "tiny@3"
    assert late.action == "challenge" and [r.rule for r in late.reasons] == ["model_unavailable"]
    # a model reading other features than the rule set names is never asked to score
    assert (refused.action, other_schema.seen) == ("challenge", [])
    assert (await (await client.get(f"/api/v1/risk/decisions/{late.id}", headers=alice)).json())[
        "outcomes"
    ] == {"model_high": "not_evaluated"}
    assert slow.metrics.model_errors == {"tiny": 1} and "tiny" not in slow.metrics.model_scores
    assert (sum(engine.metrics.model_scores["tiny"].counts), engine.metrics.model_errors) == (1, {})
    for decision in (scored, late):  # the stored score replays: the model is not asked again
        assert same(*await replay(client.app[DB], decision.id))


def _sql(client: TestClient) -> CounterStore:  # type: ignore[type-arg]
    from mpaas.banking.risk.counters import SqlCounterStore

    return SqlCounterStore(client.app[DB])


async def test_cases_labels_snoozes_and_replay(
    client: TestClient,  # type: ignore[type-arg]
    desk: Any,
    token_factory: Callable[[str], Any],
    engine: CelRiskEngine,
    transfer: MakeTransfer,
    clock: Any,
) -> None:
    clock.now = time.time()  # snoozes expire on the server's clock, 30 days from now
    alice, bob = await desk.officers()
    await desk.activate(
        desk.doc(
            ("big", "txn.amount >= 100000", 70), ("odd", "txn.nothing > 1", 5), ("bad", "txn.currency > 1", 5)
        ),
        alice,
        bob,
    )
    first = await engine.decide("transfer", transfer("t1", 2000 * YUAN))
    await engine.decide("transfer", transfer("t2", 20 * YUAN))  # allow: no case
    cases = await (await client.get("/api/v1/risk/cases?status=open", headers=alice)).json()
    assert [(c["decision_id"], c["action"]) for c in cases["items"]] == [(first.id, "review")]
    case = cases["items"][0]["id"]
    # null handling: a missing value and a type error are "not evaluated", counted per rule
    assert first.values["txn"] and engine.metrics.rule_counts[("transfer", "odd", "not_evaluated")] == 2
    assert engine.metrics.rule_counts[("transfer", "bad", "error")] == 2

    early = await client.post(
        f"/api/v1/risk/cases/{case}/snooze", json={"rule": "big", "entity": "user", "days": 30}, headers=alice
    )
    assert early.status == 409
    assert_error(await early.json(), "case_not_reviewed")
    labelled = await client.post(
        f"/api/v1/risk/cases/{case}/label", json={"label": "not_fraud", "note": "payroll"}, headers=alice
    )
    assert labelled.status == 200 and (await labelled.json())["status"] == "reviewed"
    assert await labels_for(client.app[DB], [first.id, "0" * 32]) == {first.id: "not_fraud"}
    too_long = await client.post(
        f"/api/v1/risk/cases/{case}/snooze",
        json={"rule": "big", "entity": "user", "days": 181},
        headers=alice,
    )
    assert too_long.status == 400
    snoozed = await client.post(
        f"/api/v1/risk/cases/{case}/snooze", json={"rule": "big", "entity": "user", "days": 30}, headers=alice
    )
    assert snoozed.status == 201 and (await snoozed.json())["value"] == "u_1"

    again = await engine.decide("transfer", transfer("t3", 2000 * YUAN))
    other = await engine.decide("transfer", transfer("t4", 2000 * YUAN, user="u_2"))
    assert again.action == "allow" and engine.rule_stats[("transfer@1", "big")]["snoozed"] == 1
    assert other.action == "review"  # only that entity

    for decision in (first, again, other):
        replayed = await (
            await client.get(f"/api/v1/risk/decisions/{decision.id}/replay", headers=alice)
        ).json()
        assert replayed["identical"] is True, replayed
    row, result = await replay(client.app[DB], again.id)
    assert same(row, result) and result.outcomes["big"] == "snoozed"


async def test_a_shadow_rule_set_is_evaluated_after_the_answer_with_no_effect(
    client: TestClient,  # type: ignore[type-arg]
    desk: Any,
    token_factory: Callable[[str], Any],
    engine: CelRiskEngine,
    transfer: MakeTransfer,
) -> None:
    alice, bob = await desk.officers()
    await desk.activate(desk.doc(("big", "txn.amount >= 100000", 100)), alice, bob)
    shadow_path = await desk.draft(
        desk.doc(("medium", "txn.amount >= 10000", 100), ("fast", "vel.user.count_1h >= 1", 0)), alice
    )
    assert (
        await client.put("/api/v1/risk/shadow/transfer", json={"version": 1}, headers=alice)
    ).status == 409
    assert (
        await client.put("/api/v1/risk/shadow/transfer", json={"version": 2}, headers=alice)
    ).status == 200
    answers = [
        await engine.decide("transfer", transfer(f"t{i}", amount))
        for i, amount in enumerate((5000, 50000, 500000))
    ]
    assert [a.action for a in answers] == ["allow", "allow", "deny"]  # the live rule set alone decides
    assert not await labels_for(client.app[DB], [a.id for a in answers])
    await engine.drain()
    report = await (await client.get("/api/v1/risk/shadow/transfer", headers=alice)).json()
    assert (report["shadow"], report["decisions"], report["disagreements"]) == ("transfer@2", 3, 1)
    assert (
        report["recent"][0]["decision_id"] == answers[1].id and report["recent"][0]["shadow_action"] == "deny"
    )
    assert shadow_path.endswith("/2")


async def test_shadow_rows_are_written_in_batches_not_one_transaction_per_decision(
    client: TestClient,  # type: ignore[type-arg]
    desk: Any,
    engine: CelRiskEngine,
    transfer: MakeTransfer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: a shadow row written on its own after each answer made the next live
    decision wait behind its transaction (live p99 2.3x with a shadow set)."""
    monkeypatch.setattr(shadow_module, "FLUSH_SECONDS", 3600.0)  # only the row count or a flush writes
    monkeypatch.setattr(shadow_module, "FLUSH_ROWS", 3)
    alice, bob = await desk.officers()
    await desk.activate(desk.doc(("big", "txn.amount >= 100000", 100)), alice, bob)
    await desk.draft(desk.doc(("medium", "txn.amount >= 10000", 100)), alice)
    await client.put("/api/v1/risk/shadow/transfer", json={"version": 2}, headers=alice)

    async def stored() -> int:
        report = await (await client.get("/api/v1/risk/shadow/transfer", headers=alice)).json()
        return int(report["decisions"])

    for i in range(2):
        await engine.decide("transfer", transfer(f"t{i}", 50000))
    await asyncio.gather(*list(engine._pending))  # the evaluations ran; their rows wait for the batch
    assert await stored() == 0
    await engine.decide("transfer", transfer("t2", 50000))
    await asyncio.gather(*list(engine._pending))
    await engine.shadow_results.flush()
    assert await stored() == 3  # the third row filled the batch
    await engine.decide("transfer", transfer("t3", 50000))
    await engine.drain()  # shutdown writes what waits
    assert await stored() == 4


@sqlite_only
async def test_a_backtest_is_deterministic_and_split_by_label(
    client: TestClient,  # type: ignore[type-arg]
    desk: Any,
    token_factory: Callable[[str], Any],
    engine: CelRiskEngine,
    transfer: MakeTransfer,
) -> None:
    alice, bob = await desk.officers()
    await desk.activate(desk.doc(("big", "txn.amount >= 100000", 100)), alice, bob)
    decisions = [
        await engine.decide("transfer", transfer(f"t{i}", amount * YUAN))
        for i, amount in enumerate((5, 500, 2000, 3000))
    ]
    cases = (await (await client.get("/api/v1/risk/cases", headers=alice)).json())["items"]
    by_decision = {c["decision_id"]: c["id"] for c in cases}
    await client.post(
        f"/api/v1/risk/cases/{by_decision[decisions[2].id]}/label", json={"label": "fraud"}, headers=alice
    )
    await client.post(
        f"/api/v1/risk/cases/{by_decision[decisions[3].id]}/label", json={"label": "not_fraud"}, headers=alice
    )
    await desk.draft(desk.doc(("huge", "txn.amount >= 250000", 100)), alice)

    since = datetime(2020, 1, 1, tzinfo=UTC)
    seen: list[int] = []
    first = await backtest(client.app[DB], "transfer", 2, since, progress=seen.append)
    second = await backtest(client.app[DB], "transfer", 2, since)
    assert first.to_dict() == second.to_dict() and seen == [4]
    row_by_row = await backtest(client.app[DB], "transfer", 2, since, columnar=False)
    assert row_by_row.to_dict() == first.to_dict()  # the columnar path reports what compose() decides
    out = first.to_dict()["by_label"]
    assert (out["fraud"]["changed"], out["fraud"]["moves"]) == (
        1,
        {"deny→allow": 1},
    )  # the draft misses this fraud
    assert (out["not_fraud"]["changed"], out["unlabelled"]["changed"]) == (0, 0)
    for decision in decisions:
        assert same(*await replay(client.app[DB], decision.id))
