"""A columnar backtest decides every stored decision as compose() does, with bit-identical
scores: lists, snoozes, the model's share, thresholds, the allow list and the fail mode."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.appkeys import DB
from mpaas.banking.risk import backtest as backtest_module
from mpaas.banking.risk.backtest import backtest
from mpaas.banking.risk.backtest_columns import Page, actions, plan, scores
from mpaas.banking.risk.compose import compose
from mpaas.banking.risk.models import RiskDecision
from mpaas.banking.risk.rules import CompiledRuleSet, compile_ruleset, parse_document
from mpaas.banking.risk.store import default_document

VEL = [f"vel.{e}.{m}_{w}" for e in ("user", "device") for m in ("count", "sum") for w in ("1h", "24h", "30d")]


def draft(*, review: bool, fail_mode: str, model: bool) -> CompiledRuleSet:
    """The shipped transfer rules plus generated ones (as bench/risk.py's draft), 60 in all."""
    doc = default_document("transfer")
    assert doc is not None
    data = doc.to_dict()
    for i in range(60 - len(data["rules"])):
        path = VEL[i % len(VEL)]
        limit = (i // len(VEL) + 2) * (5 if "count" in path else 200_000)
        expr = f"{path} >= {limit} && txn.amount > {1000 * (i % 7)}"
        data["rules"].append({"name": f"gen_{i:03d}", "expr": expr, "weight": 0.1 + i / 7, "message": "g"})
    data["rules"].append({"name": "odd_form", "expr": "int(txn.amount) > 100", "weight": 3.3, "message": "o"})
    data["thresholds"] = {"challenge": 50, "deny": 100} | ({"review": 80} if review else {})
    data["fail_mode"] = fail_mode
    if not model:
        data.pop("model")
    return compile_ruleset("transfer@draft", parse_document(data))


NUMBER = st.one_of(
    st.integers(min_value=-5, max_value=3_000_000),
    st.floats(min_value=-1e7, max_value=1e7),
    st.none(),
    st.sampled_from([2**63, "12", True]),
)
FACTS = st.fixed_dictionaries(
    {},
    optional={
        "deny": st.lists(st.sampled_from(["device", "counterparty"]), max_size=2),
        "allow": st.lists(st.just("device"), max_size=1),
        "degraded": st.lists(st.sampled_from(["counters", "model"]), max_size=2),
        "snoozed": st.lists(st.sampled_from(["user_velocity_1h", "gen_000", "gen_013", "nope"]), max_size=3),
        "model": st.fixed_dictionaries(
            {"name": st.sampled_from(["transfer_default", "other"]), "score": st.floats(0, 1)}
        ),
    },
)
INPUTS = st.fixed_dictionaries(
    {
        "txn": st.fixed_dictionaries({}, optional={"amount": NUMBER, "external": st.booleans()}),
        "vel": st.fixed_dictionaries(
            {
                "user": st.dictionaries(st.sampled_from([p.split(".")[2] for p in VEL[:6]]), NUMBER),
                "device": st.dictionaries(st.sampled_from([p.split(".")[2] for p in VEL[6:]]), NUMBER),
            }
        ),
        "device": st.fixed_dictionaries({}, optional={"first_seen_days": NUMBER}),
        "lists": st.fixed_dictionaries({"deny": st.dictionaries(st.sampled_from(["device"]), st.booleans())}),
    },
    optional={"_engine": FACTS, "geo": st.just({})},
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(INPUTS, min_size=1, max_size=12),
    st.booleans(),
    st.sampled_from(["open", "closed"]),
    st.booleans(),
)
def test_columnar_actions_and_scores_equal_compose(
    inputs: list[dict[str, Any]], review: bool, fail_mode: str, model: bool
) -> None:
    compiled = draft(review=review, fail_mode=fail_mode, model=model)
    plans = plan(compiled)
    assert sum(p.node is None for p in plans) == 1  # only int() falls back
    assert actions(compiled, plans, inputs) == [compose(compiled, i).action for i in inputs]
    got = scores(compiled, plans, Page(inputs)).tolist()
    for k, row in enumerate(inputs):
        facts = row.get("_engine") or {}
        context = {r: v for r, v in row.items() if r != "_engine"}
        expected = compiled.evaluate(context, frozenset(facts.get("snoozed") or ())).score
        assert got[k].hex() == expected.hex()


def _contexts(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    for k in range(n):
        facts: dict[str, Any] = {}
        if k % 5 == 0:
            facts["snoozed"] = ["user_velocity_1h"]
        if k % 11 == 0:
            facts["deny"] = ["device"]
        if k % 7 == 0:
            facts["model"] = {"name": "transfer_default", "score": rng.random()}
        out.append(
            {
                "txn": {"amount": rng.choice([100, 250_000, 600_000, 2_500_000, None, 1.5])},
                "vel": {
                    "user": {"count_1h": rng.randrange(0, 14), "count_24h": rng.randrange(0, 70)},
                    "device": {"count_1h": rng.randrange(0, 20), "sum_24h": rng.randrange(0, 900_000)},
                },
                "device": {"first_seen_days": rng.choice([0.5, 3.0, 400.0])},
                "lists": {"deny": {"device": rng.random() < 0.05}},
                "_engine": facts,
            }
        )
    return out


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backtest_module, "PAGE", 7)  # many pages, and ties on created_at across them


async def test_backtest_reports_the_same_columnar_and_row_by_row(
    client: TestClient,
    small_pages: None,
) -> None:
    db = client.app[DB]
    rng = random.Random(19)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    async with db.session() as s:
        for k, inputs in enumerate(_contexts(rng, 120)):
            s.add(
                RiskDecision(
                    id=f"d{k:04d}{rng.randrange(10**6):06d}",
                    scene="transfer",
                    ruleset_version="transfer@1",
                    action=rng.choice(["allow", "challenge", "review", "deny"]),
                    score=0.0,
                    inputs=inputs,
                    created_at=start + timedelta(seconds=k // 4),  # four decisions a second
                )
            )
        await s.commit()
    since = start + timedelta(seconds=3)
    for review, fail_mode, model in ((True, "closed", True), (False, "open", False)):
        compiled = draft(review=review, fail_mode=fail_mode, model=model)
        seen: list[int] = []
        columnar = await backtest(db, "transfer", 0, since, compiled=compiled, progress=seen.append)
        rows = await backtest(db, "transfer", 0, since, compiled=compiled, columnar=False)
        assert columnar.to_dict() == rows.to_dict()
        assert columnar.decisions == 108 and seen[-1] == 108 and len(seen) == 16
        assert columnar.changed > 0
