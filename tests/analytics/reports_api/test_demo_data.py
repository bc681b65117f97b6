"""The demo generator: deterministic, and seeded once into a store with the 12 journeys."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from mpaas.analytics.demo.catalogue import JOURNEYS, TIERS
from mpaas.analytics.demo.generator import DemoSpec, generate
from mpaas.analytics.demo.seed import claim_store, demo_events, seed_events, seed_store
from mpaas.analytics.store.duckdb import DuckDbStore
from mpaas.settings import Settings

END = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def names(spec: DemoSpec) -> Counter[str]:
    table = generate(spec).batch().events
    return Counter(str(e) for e in table.column("event").to_pylist())


def test_same_seed_same_events_other_seed_other_events() -> None:
    spec = DemoSpec(end=END, users=30, days=8, seed=11)
    first, again = generate(spec).batch().events, generate(spec).batch().events
    assert first.equals(again)
    other = names(DemoSpec(end=END, users=30, days=8, seed=12))
    assert names(spec) != other and sum(other.values()) > 200


def test_the_demo_has_what_the_reports_need() -> None:
    table = generate(DemoSpec(end=END, users=150, days=14, seed=7)).batch().events
    counts = Counter(str(e) for e in table.column("event").to_pylist())
    for j in JOURNEYS:
        if j.name not in ("loan_application", "wealth_purchase"):  # rarer; present with more users
            assert counts[j.steps[0]] > counts[j.steps[-1]] > 0, j.name
    for name in ("ux.app_start", "ux.crash", "ux.h5_perf", "ux.network_error", "update.reported", "push.sent",
                 "push.delivered", "push.arrived", "push.opened"):  # fmt: skip
        assert counts[name] > 0, name
    assert all(t < END for t in table.column("received_at").to_pylist())
    types = Counter(table.column("type").to_pylist())
    assert types["identify"] > 0
    traits = zip(table.column("properties").to_pylist(), table.column("type").to_pylist(), strict=True)
    tiers = {json.loads(p)["tier"] for p, kind in traits if kind == "identify"}
    assert tiers == {t for t, _ in TIERS if t != "visitor"}  # visitors never log in


def test_demo_thread_seeds_under_the_writer_lock(tmp_path: Path) -> None:
    settings = Settings.from_env({}, {"data_dir": tmp_path, "database_url": f"sqlite:///{tmp_path / 'm.db'}"})
    lock = claim_store(settings)
    assert lock is not None and claim_store(settings) is None  # the server's loader waits
    seeded = seed_events(settings, DemoSpec(end=END, app="superapp", users=20, days=5), lock)
    assert seeded.events > 0
    again = claim_store(settings)  # released: the loader takes over
    assert again is not None
    assert seed_events(settings, DemoSpec(end=END, app="superapp", users=20, days=5), again).events == 0


def test_seeding_is_once() -> None:
    store = DuckDbStore(":memory:")
    spec = DemoSpec(end=END, app="superapp", users=40, days=7, seed=5)
    first = seed_store(store, spec)
    assert first.events == first.total == demo_events(store, "superapp") > 0
    again = seed_store(store, spec)
    assert (again.events, again.total) == (0, first.total)
    store.close()
