"""bench/risk.py parts (c) and (d): a backtest over stored decisions with a 100-rule draft,
and what a shadow draft costs the live decision."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime

from risk_support import LOAD_NOTE, bed, hundred_rules, percentile

from mpaas.banking.risk.backtest import backtest
from mpaas.banking.risk.backtest_columns import plan
from mpaas.banking.risk.modelcentre.synthetic import transfers
from mpaas.banking.risk.review import Review
from mpaas.banking.risk.rules import compile_ruleset, parse_document
from mpaas.banking.risk.shadow import ShadowResults
from mpaas.banking.risk.store import RuleSets
from mpaas.identity.audit import Actor

SEED_DECISIONS = 2000
COLUMNS = (
    "scene, subject, ruleset_version, action, score, reasons, outcomes, inputs, created_at, model_version"
)


#: Integer values each copy nudges by a random 0..k, so no two copies read the same inputs.
PERTURB = (("$.txn.amount", 5000), ("$.vel.user.count_1h", 3), ("$.vel.device.count_24h", 3))


def _perturbed(column: str) -> str:
    """``column`` with each PERTURB path present nudged (a null stays null; nothing is created)."""
    pairs = ", ".join(
        f"'{path}', json_extract({column}, '{path}') + abs(random() % {spread + 1})"
        for path, spread in PERTURB
    )
    return f"json_replace({column}, {pairs})"


def _grow(path: str, target: int) -> int:
    """Copy the stored decisions (new ids, amounts and counters nudged) until there are ``target``."""
    conn = sqlite3.connect(path)
    select = COLUMNS.replace("inputs", _perturbed("inputs"))
    try:
        have = conn.execute("SELECT count(*) FROM risk_decisions").fetchone()[0]
        while have < target:
            conn.execute(
                f"INSERT INTO risk_decisions (id, {COLUMNS}) SELECT lower(hex(randomblob(16))), {select} "
                f"FROM risk_decisions LIMIT {min(have, target - have)}"
            )
            conn.commit()
            have = conn.execute("SELECT count(*) FROM risk_decisions").fetchone()[0]
        return int(have)
    finally:
        conn.close()


async def backtest_part(n: int) -> str:
    async with bed(scorer=False) as b:
        for t in transfers(5, SEED_DECISIONS):
            b.clock.now = t.at
            ctx = t.context()
            await b.engine.decide("transfer", ctx)
            await b.engine.committed("transfer", ctx)
        stored = await asyncio.to_thread(_grow, str(b.folder / "mpaas.db"), n)
        draft = compile_ruleset("transfer@draft", parse_document(hundred_rules(None)))
        row_wise = sum(p.node is None for p in plan(draft))
        seen = [0]
        start, cpu = time.perf_counter(), time.process_time()
        report = await backtest(
            b.db,
            "transfer",
            0,
            datetime(2000, 1, 1, tzinfo=UTC),
            compiled=draft,
            progress=lambda k: seen.__setitem__(0, k),
        )
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return (
        "| backtest | value |\n|---|---:|\n"
        f"| stored decisions re-evaluated | {report.decisions:,} (of {stored:,}) |\n"
        f"| draft rules (columnar / row-wise) | {len(draft.programs) - row_wise} / {row_wise} |\n"
        f"| wall time | {elapsed:.1f} s (goal ≤ 60 s) |\n"
        f"| CPU time (this process, its SQLite thread included) | {cpu:.1f} s |\n"
        f"| decisions per second | {report.decisions / elapsed:,.0f} |\n"
        f"| rule evaluations per second | {100 * report.decisions / elapsed:,.0f} |\n"
        f"| decisions changed by the draft | {report.changed:,} |\n\n"
        f"Rows are {SEED_DECISIONS:,} decisions made by the engine, copied with new ids and with "
        f"txn.amount and two velocity counters nudged per copy (no two copies read the same inputs); "
        f"{LOAD_NOTE}."
    )


async def shadow_part(rounds: int) -> str:
    actor, other = Actor("bench"), Actor("bench-reviewer")
    items = transfers(11, 3000)
    lat: dict[str, list[float]] = {}
    for label in ("live alone (baseline)", "live + shadow draft"):
        async with bed() as b:
            doc = parse_document(hundred_rules({}))
            await RuleSets(b.db).activate(actor, "transfer", doc)
            if label != "live alone (baseline)":
                draft = await Review(b.db).draft(other, "transfer", parse_document(hundred_rules(None)))
                await ShadowResults(b.db).set(actor, "transfer", draft.version)
            if b.engine.scorer is not None:
                await b.engine.scorer.active("transfer", "transfer_default")
            for t in items[:1500]:
                b.clock.now = t.at
                await b.engine.committed("transfer", t.context())
            times = []
            for j in range(rounds):
                t = items[1500 + j % 1500]
                b.clock.now = t.at
                s = time.perf_counter()
                await b.engine.decide("transfer", t.context())
                times.append(time.perf_counter() - s)
                await asyncio.sleep(0)  # the shadow runs after the answer, as between requests
            lat[label] = times
    base, shadow = lat["live alone (baseline)"], lat["live + shadow draft"]
    p99b, p99s = percentile(base, 0.99), percentile(shadow, 0.99)
    return (
        "| shadow | p50 | p99 |\n|---|---:|---:|\n"
        f"| live alone (baseline) | {percentile(base, 0.5) * 1e3:.2f} ms | {p99b * 1e3:.2f} ms |\n"
        f"| live + shadow draft | {percentile(shadow, 0.5) * 1e3:.2f} ms | {p99s * 1e3:.2f} ms |\n"
        f"| p99 ratio (goal < 1.05) | | {p99s / p99b:.2f} |\n\n{rounds} decisions each; {LOAD_NOTE}."
    )
