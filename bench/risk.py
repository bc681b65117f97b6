"""Quality and speed of the risk engine with the shipped rules and model (issue 19).

    .venv/bin/python bench/risk.py [--transfers 100000] [--seed 20261204] [--skip quality,speed,backtest,shadow]
                                   [--backtest-decisions 1000000] [--write]

(a) quality: a fresh seed's synthetic transfers (``modelcentre.synthetic``; the shipped model
    was trained on seed 7) go one by one, in time order, through the real ``CelRiskEngine``
    (SQL counters on SQLite, or Redis with MPAAS_TEST_REDIS_URL) with the shipped rules and
    model. An allowed transfer commits; a challenged honest one commits too (the customer passes
    the one-time code); a challenged or denied attack does not. Reported: the share of attack
    episodes caught (at least one transfer challenged or worse), the share of attack transfers
    stopped, per attack type, and the share of honest transfers challenged or worse.
(b) speed: ``decide()`` latency with 100 rules, 12 velocity features and the model, against the
    same rules without the model (the baseline of the same run), and CEL throughput alone; on
    a SQLite file in RAM with SQL counters (the embedded default), and, when
    MPAAS_TEST_DATABASE_URL and MPAAS_TEST_REDIS_URL are set, on PostgreSQL with Redis
    counters (what a bank runs).
(c) backtest of stored decisions with a 100-rule draft (``banking/risk/backtest.py``).
(d) shadow: live p99 with a shadow draft against without, same run (bench/risk_more.py).

``--write`` puts the tables into docs/benchmarks.md (blocks ``risk quality`` and ``risk speed``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from risk_more import backtest_part, shadow_part
from risk_support import LOAD_NOTE, PG_URL, REDIS_URL, bed, hundred_rules, percentile
from update_check_setup import write_block

from mpaas.banking.risk.modelcentre.registry import shipped
from mpaas.banking.risk.modelcentre.synthetic import ATTACKS, transfers
from mpaas.banking.risk.rules import compile_ruleset, parse_document, prune
from mpaas.banking.risk.store import RuleSets
from mpaas.identity.audit import Actor

STOPS = ("challenge", "review", "deny")


async def quality(n: int, seed: int) -> tuple[str, dict[str, Any]]:
    items = transfers(seed, n)
    per: dict[str, Counter[str]] = {kind: Counter() for kind in (*ATTACKS, "honest")}
    caught: dict[str, bool] = {}
    kind_of: dict[str, str] = {}
    actions: Counter[str] = Counter()
    started = time.perf_counter()
    async with bed() as b:
        model = await b.engine.scorer.active("transfer", shipped().name) if b.engine.scorer else None
        for i, t in enumerate(items):
            b.clock.now = t.at
            ctx = t.context()
            d = await b.engine.decide("transfer", ctx)
            stopped = d.action in STOPS
            actions[f"{t.label}:{d.action}"] += 1
            per[t.label]["n"] += 1
            per[t.label]["stopped"] += stopped
            if t.episode:
                kind_of[t.episode] = t.label
                caught[t.episode] = caught.get(t.episode, False) or stopped
            if d.action == "allow" or (d.action == "challenge" and t.label == "honest"):
                await b.engine.committed("transfer", ctx)
            if i % 10_000 == 9_999:
                print(f"  {i + 1} transfers, {time.perf_counter() - started:.0f} s", file=sys.stderr)
        counters = b.counters
    elapsed = time.perf_counter() - started
    rows = ["| attack | episodes | caught | transfers | stopped |", "|---|---:|---:|---:|---:|"]
    total_e = total_c = total_t = total_s = 0
    for kind in ATTACKS:
        eps = [e for e, k in kind_of.items() if k == kind]
        got = sum(caught[e] for e in eps)
        total_e, total_c = total_e + len(eps), total_c + got
        total_t, total_s = total_t + per[kind]["n"], total_s + per[kind]["stopped"]
        rows.append(
            f"| {kind} | {len(eps)} | {_pct(got, len(eps))} | {per[kind]['n']} | "
            f"{_pct(per[kind]['stopped'], per[kind]['n'])} |"
        )
    rows.append(
        f"| **all attacks** | {total_e} | **{_pct(total_c, total_e)}** | {total_t} | {_pct(total_s, total_t)} |"
    )
    honest = per["honest"]
    rows.append(
        f"| honest (challenged or worse) | | | {honest['n']} | **{_pct(honest['stopped'], honest['n'], 3)}** |"
    )
    summary = {
        "caught": total_c / max(1, total_e),
        "honest_stopped": honest["stopped"] / max(1, honest["n"]),
        "actions": dict(sorted(actions.items())),
    }
    head = (
        f"{n:,} transfers (seed {seed}), shipped rules + model {f'{model.name}@{model.version}' if model else '-'}; "
        f"counters: {counters}; {elapsed:.0f} s. Goal: ≥ 90 % of attacks caught, ≤ 1 % honest challenged.\n"
    )
    return head + "\n" + "\n".join(rows), summary


def _pct(a: int, b: int, digits: int = 1) -> str:
    return f"{100 * a / b:.{digits}f} %" if b else "-"


#: (name, PostgreSQL, Redis counters): the embedded default, and what a bank runs (when
#: MPAAS_TEST_DATABASE_URL and MPAAS_TEST_REDIS_URL are set).
SETUPS = [("SQLite file in RAM, SQL counters", False, False)] + (
    [("PostgreSQL, Redis counters", True, True)] if PG_URL and REDIS_URL else []
)


async def speed(rounds: int) -> str:
    lines = ["| measure | value |", "|---|---:|"]
    for setup, postgres, redis in SETUPS:
        lines += await _latency(setup, rounds, postgres=postgres, redis=redis)
    lines += _cel_and_model()
    setups = " and ".join(name for name, _pg, _redis in SETUPS)
    return (
        "\n".join(lines) + f"\n\n{rounds} decisions each after 200 untimed ones, in-process ({setups}), "
        f"gc.freeze() after the warm-up; {LOAD_NOTE}."
    )


async def _latency(setup: str, rounds: int, *, postgres: bool, redis: bool) -> list[str]:
    actor = Actor("bench")
    lines = []
    items = transfers(99, 3000)
    lat: dict[str, list[float]] = {}
    for label, with_model in (("rules alone (baseline)", False), ("rules + model", True)):
        async with bed(postgres=postgres, redis=redis) as b:
            doc = parse_document(hundred_rules({} if with_model else None))
            await RuleSets(b.db).activate(actor, "transfer", doc)
            if b.engine.scorer is not None:
                await b.engine.scorer.active("transfer", shipped().name)  # loaded before timing
            for t in items[:1500]:  # history for the velocity windows
                b.clock.now = t.at
                await b.engine.committed("transfer", t.context())
            for t in items[1500:1700]:  # warm-up: caches, compiled statements, connections
                b.clock.now = t.at
                await b.engine.decide("transfer", t.context())
            # What the server does after start-up: the long-lived objects leave the collector's
            # generations, so a full collection does not walk them inside a decision (p99).
            gc.collect()
            gc.freeze()
            times = []
            cpu_start = time.process_time()
            for j in range(rounds):
                t = items[1500 + j % 1500]
                b.clock.now = t.at
                ctx = t.context()
                s = time.perf_counter()
                await b.engine.decide("transfer", ctx)
                times.append(time.perf_counter() - s)
            cpu = (time.process_time() - cpu_start) / rounds
            gc.unfreeze()
            lat[label] = times
            lines.append(f"| {setup}: {label}, CPU per decide() (all threads) | {cpu * 1e3:.2f} ms |")
            lines.append(f"| {setup}: {label}, decide() p50 | {percentile(times, 0.5) * 1e3:.2f} ms |")
            lines.append(f"| {setup}: {label}, decide() p99 | {percentile(times, 0.99) * 1e3:.2f} ms |")
    base, full = lat["rules alone (baseline)"], lat["rules + model"]
    lines.append(
        f"| {setup}: p50 ratio, with model / without | {percentile(full, 0.5) / percentile(base, 0.5):.2f} |"
    )
    return lines


def _cel_and_model() -> list[str]:
    lines = []
    items = transfers(99, 3000)
    # CEL alone: one compiled 100-rule set on recorded inputs, no I/O
    doc = parse_document(hundred_rules(None))
    compiled = compile_ruleset("bench", doc)
    sample = _contexts(items[1500:2000])
    pruned = [prune(c, compiled) for c in sample]
    start = time.process_time()
    reps = 0
    while time.process_time() - start < 2.0:
        for c in pruned:
            compiled.evaluate(c)
        reps += len(pruned)
    cpu = time.process_time() - start
    lines.append(
        f"| CEL evaluations per CPU second (100 rules a decision) | {reps * len(doc.rules) / cpu:,.0f} |"
    )
    model = shipped().model()
    rows = [[v for v in _row(c, model.features)] for c in sample]
    start = time.process_time()
    for r in rows * 4:
        model.score(r)
    lines.append(
        f"| model score, one row (our LightGBM tree walker) | {(time.process_time() - start) / (4 * len(rows)) * 1e6:.1f} µs CPU |"
    )
    return lines


def _contexts(items: list[Any]) -> list[dict[str, Any]]:
    from mpaas.banking.risk.modelcentre.replay import Featurizer

    feats = Featurizer()
    out = []
    for t in items:
        ctx = t.context()
        out.append(feats.context(ctx, t.at))
        feats.commit(ctx, t.at)
    return out


def _row(context: dict[str, Any], paths: tuple[str, ...]) -> list[float | None]:
    from mpaas.banking.risk.modelcentre.runtime import feature_values

    return feature_values(context, paths)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--backtest-decisions", type=int, default=1_000_000)
    parser.add_argument("--skip", default="")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    blocks: dict[str, str] = {}
    if "quality" not in skip:
        table, summary = await quality(args.transfers, args.seed)
        print(table, "\n", summary)
        blocks["risk quality"] = table
    parts = []
    if "speed" not in skip:
        parts.append(await speed(args.rounds))
    if "backtest" not in skip:
        parts.append(await backtest_part(args.backtest_decisions))
    if "shadow" not in skip:
        parts.append(await shadow_part(args.rounds))
    if parts:
        blocks["risk speed"] = "\n\n".join(parts)
        print(blocks["risk speed"])
    if args.write:
        for block, table in blocks.items():
            write_block(block, table)


if __name__ == "__main__":
    asyncio.run(main())
