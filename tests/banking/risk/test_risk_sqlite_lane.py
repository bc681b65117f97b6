"""The decision path's own SQLite connection (``sqlite_lane``) against the SQLAlchemy path it
replaces: a decision row, its case and the velocity counters read back the same either way
(hypothesis), a decision and its case are stored together or not at all, and a decision
stored through the lane replays bit for bit."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from mpaas.appkeys import DB
from mpaas.banking.risk.backtest import replay, same
from mpaas.banking.risk.cases import case_row
from mpaas.banking.risk.counters import Counts, Observation, SqlCounterStore
from mpaas.banking.risk.decision import Decision, Reason, RiskContext
from mpaas.banking.risk.engine import CelRiskEngine
from mpaas.banking.risk.models import RiskCase, RiskDecision
from mpaas.banking.risk.sqlite_lane import SqliteLane, json_text
from mpaas.banking.risk.store import Decisions
from mpaas.settings import Settings
from mpaas.storage.db import Database

HOUR = 3600.0
START = 1_800_000_000.0
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# JSON-like values as a caller's context may hold them: big integers, unicode, nesting.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
)
inputs = st.dictionaries(st.sampled_from(["txn", "user", "device", "vel", "_engine"]), values, max_size=5)
reasons = st.lists(
    st.builds(
        Reason,
        st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
        st.floats(min_value=0, max_value=1e6),
        st.text(max_size=40),
    ),
    max_size=4,
)
outcomes = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
    st.sampled_from(["hit", "miss", "not_evaluated", "snoozed"]),
    max_size=20,
)


def _copy_db(template: Path, folder: Path) -> Database:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, folder / "mpaas.db")
    return Database(
        Settings.from_env({}, {"data_dir": folder, "database_url": f"sqlite:///{folder / 'mpaas.db'}"})
    )


def _comparable(row: Any) -> dict[str, Any]:
    out = {k: v for k, v in row.model_dump().items() if k not in ("id", "decision_id")}
    out["created_at"] = (type(row.created_at), row.created_at.tzinfo)
    return out


@SLOW
@given(st.lists(st.tuples(inputs, reasons, outcomes, st.booleans()), min_size=1, max_size=6))
def test_a_decision_and_its_case_read_back_the_same_through_the_lane(
    sqlite_template: Path, tmp_path: Path, examples: list[Any]
) -> None:
    async def check() -> None:
        db = _copy_db(sqlite_template, tmp_path / uuid.uuid4().hex)
        lane = SqliteLane.open(db)
        assert lane is not None
        fast, slow = Decisions(db, lane), Decisions(db)
        try:
            for values_, reasons_, outcomes_, with_case in examples:
                stored = []
                for store in (fast, slow):
                    decision = Decision(
                        uuid.uuid4().hex, "deny", 12.5, tuple(reasons_), "transfer@1", values_
                    )
                    case = case_row("transfer", "t_1", decision, {"user": "u_1"}) if with_case else None
                    await store.store("transfer", "t_1", decision, outcomes_, "m@1", case)
                    stored.append(decision.id)
                async with db.session() as s:
                    rows = [await s.get(RiskDecision, i) for i in stored]
                    cases = [
                        (await s.exec(select(RiskCase).where(RiskCase.decision_id == i))).first()
                        for i in stored
                    ]
                assert _comparable(rows[0]) == _comparable(rows[1])
                first = rows[0]
                assert first is not None and first.inputs == values_ and first.outcomes == outcomes_
                if with_case:
                    assert cases[0] is not None and cases[1] is not None
                    assert _comparable(cases[0]) == _comparable(cases[1])
                else:
                    assert cases == [None, None]
        finally:
            await lane.close()
            await db.close()

    asyncio.run(check())


observations = st.lists(
    st.tuples(
        st.sampled_from(["e1", "e2", "e3", "e4"]),  # a repeated event id counts once
        st.lists(
            st.sampled_from(["transfer/user:u_1", "transfer/device:d_1", "transfer/user:u_2"]), min_size=1
        ),
        st.integers(min_value=0, max_value=10**12),
        st.floats(min_value=0, max_value=40 * 86400),
        st.none() | st.tuples(st.floats(-90, 90), st.floats(-180, 180)),
    ),
    max_size=8,
)


@SLOW
@given(observations, st.floats(min_value=0, max_value=45 * 86400))
def test_counters_through_the_lane_match_sqlalchemy(
    sqlite_template: Path, tmp_path: Path, seen: list[Any], later: float
) -> None:
    async def run(lane: bool) -> tuple[list[bool], list[dict[str, Counts]]]:
        db = _copy_db(sqlite_template, tmp_path / uuid.uuid4().hex)
        store = SqlCounterStore(db)
        if not lane:
            await store.close()
            store.lane = None
        try:
            recorded = [
                await store.record(Observation(e, tuple(keys), amount, START + at, place))
                for e, keys, amount, at, place in seen
            ]
            keys = ["transfer/user:u_1", "transfer/device:d_1", "transfer/user:u_2", "transfer/user:none"]
            reads = [await store.read(keys, START + t, places=True) for t in (later, HOUR, 0.0)]
            return recorded, reads
        finally:
            await store.close()
            await db.close()

    async def check() -> None:
        assert await run(lane=True) == await run(lane=False)

    asyncio.run(check())


sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def test_a_decision_is_not_stored_when_its_case_cannot_be(
    client: TestClient,
) -> None:
    """Both paths (the lane on SQLite; one transaction through SQLAlchemy on either database)."""
    db = client.app[DB]
    lane = SqliteLane.open(db)
    try:
        for store in (Decisions(db, lane), Decisions(db)):
            first = Decision(uuid.uuid4().hex, "deny", 100.0, (), "transfer@1", {"txn": {"amount": 1}})
            await store.store("transfer", "t_9", first, {}, None, case_row("transfer", "t_9", first, {}))
            clash = Decision(uuid.uuid4().hex, "deny", 100.0, (), "transfer@1", {})
            bad = case_row("transfer", "t_9", clash, {}) | {"decision_id": first.id}  # one case per decision
            with pytest.raises(Exception):  # noqa: B017 - the driver's IntegrityError, by either path
                await store.store("transfer", "t_9", clash, {}, None, bad)
            async with db.session() as s:
                assert await s.get(RiskDecision, first.id) is not None
                assert await s.get(RiskDecision, clash.id) is None
    finally:
        if lane is not None:
            await lane.close()


@sqlite_only
async def test_decisions_through_the_lane_replay_and_see_the_last_commit(
    engine: CelRiskEngine,
    client: TestClient,
    transfer: Callable[..., RiskContext],
    clock: Any,
) -> None:
    assert engine.lane is not None and engine.decisions.lane is engine.lane
    made = []
    for i in range(4):
        made.append(await engine.decide("transfer", transfer(f"t{i}", 600000 * (i + 1), first_seen_days=0.5)))
        await engine.committed("transfer", transfer(f"t{i}", 600000 * (i + 1)))  # seen by the next one
        clock.now += 60
    assert [d.values["vel"]["user"]["count_1h"] for d in made] == [0, 1, 2, 3]
    for decision in made:
        assert same(*await replay(client.app[DB], decision.id))


def test_json_text_reads_back_as_json_dumps_would() -> None:
    import json

    for value in ({"r": "hit", "名": "命中"}, [{"rule": "a", "weight": 1e-7, "message": "é"}], {"x": 2**70}):
        assert json.loads(json_text(value)) == json.loads(json.dumps(value))
    assert json_text({1: "a"}) == json.dumps({1: "a"})  # what orjson refuses, json.dumps writes


TRICKY = {
    "txn": {"amount": 2**70, "note": "转账 é \x00 \u2028", "ratio": 0.1, "tiny": 1e-7, "neg": -0.0},
    "vel": {"user": {"count_1h": 3, "avg_30d": None}},
    "_engine": {"model": {"name": "m", "score": 0.123456789012345678}, "deny": ["device"]},
    "flags": [True, False, None, [], {}],
}


async def test_stored_rows_equal_what_the_orm_insert_wrote(
    client: TestClient,
) -> None:
    """The prepared statements (the lane on SQLite, asyncpg on PostgreSQL) against the ORM
    insert the engine used before, read back through the ORM."""
    from sqlalchemy import insert

    from mpaas.storage.db import utcnow

    db = client.app[DB]
    lane = SqliteLane.open(db)
    try:
        reasons_ = (Reason("big", 70.0, "大额 transfer"), Reason("model_m", 12.345678901234567, "model m"))
        fast = Decision(uuid.uuid4().hex, "deny", 82.345678901234567, reasons_, "transfer@1", TRICKY)
        outcomes_ = {"big": "hit", "odd": "not_evaluated"}
        await Decisions(db, lane).store(
            "transfer", "t_1", fast, outcomes_, "m@1", case_row("transfer", "t_1", fast, {"user": "u"})
        )
        old = Decision(uuid.uuid4().hex, "deny", fast.score, reasons_, "transfer@1", TRICKY)
        async with db.write() as s:
            conn = await s.connection()
            row = {
                "id": old.id,
                "scene": "transfer",
                "subject": "t_1",
                "ruleset_version": "transfer@1",
                "action": "deny",
                "score": old.score,
                "reasons": [{"rule": r.rule, "weight": r.weight, "message": r.message} for r in reasons_],
                "outcomes": outcomes_,
                "inputs": dict(TRICKY),
                "created_at": utcnow(),
                "model_version": "m@1",
            }
            await conn.execute(insert(RiskDecision).values(row))
            await conn.execute(insert(RiskCase).values(case_row("transfer", "t_1", old, {"user": "u"})))
        async with db.session() as s:
            new_row, old_row = await s.get(RiskDecision, fast.id), await s.get(RiskDecision, old.id)
            cases = [
                (await s.exec(select(RiskCase).where(RiskCase.decision_id == i))).one()
                for i in (fast.id, old.id)
            ]
        assert new_row is not None and old_row is not None
        assert _comparable(new_row) == _comparable(old_row)
        assert _comparable(cases[0]) == _comparable(cases[1])
        assert new_row.inputs == TRICKY and new_row.inputs["txn"]["amount"] == 2**70
    finally:
        if lane is not None:
            await lane.close()
