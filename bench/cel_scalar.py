"""CPU per ``CompiledRuleSet.evaluate()`` of the 100-rule bench set on recorded contexts: the
generated scalar path (``cel_scalar``) against every rule through the ``cel`` package (the
evaluate before it, kept here), interleaved in one run.

    .venv/bin/python bench/cel_scalar.py [--contexts 500] [--rounds 5]

Contexts: synthetic transfers (seed 99) featurized in time order, with the deny lists the
engine adds, pruned as the engine prunes them; with and without the model's features.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cel
from risk_support import LOAD_NOTE, hundred_rules

from mpaas.banking.risk.modelcentre.replay import Featurizer
from mpaas.banking.risk.modelcentre.synthetic import transfers
from mpaas.banking.risk.rules import CompiledRuleSet, Evaluation, compile_ruleset, parse_document, prune


def cel_evaluate(compiled: CompiledRuleSet, context: dict[str, Any]) -> Evaluation:
    """The evaluate before the scalar path: one cel.Context, every rule's program."""
    activation = cel.Context(dict(context))
    score, hits, outcomes, errors = 0.0, [], {}, []
    for name, program, weight, reason in compiled._run:
        try:
            result = program.execute(activation)
        except LookupError:
            outcomes[name] = "not_evaluated"
            continue
        except Exception:
            outcomes[name] = "not_evaluated"
            errors.append(name)
            continue
        if result is True:
            outcomes[name] = "hit"
            score += weight
            hits.append(reason)
        elif result is False:
            outcomes[name] = "miss"
        else:
            outcomes[name] = "not_evaluated"
            errors.append(name)
    hits.sort(key=lambda r: -r.weight)
    return Evaluation(score, compiled.doc.thresholds.action(score), tuple(hits), outcomes, tuple(errors))


def contexts(n: int) -> list[dict[str, Any]]:
    feats = Featurizer()
    out = []
    for k, t in enumerate(transfers(99, 1500 + n)):
        ctx = t.context()
        if k >= 1500:  # after 1,500 transfers of history for the velocity windows
            full = feats.context(ctx, t.at)
            full["lists"] = {"deny": {"counterparty": False, "device": False}}
            out.append(full)
        feats.commit(ctx, t.at)
    return out


def cpu_per_call(fn: Any, compiled: CompiledRuleSet, sample: list[dict[str, Any]]) -> float:
    start = time.process_time()
    for c in sample:
        fn(compiled, c)
    return (time.process_time() - start) / len(sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contexts", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    recorded = contexts(args.contexts)
    print("| rule set | cel package (before) | scalar (after) | ratio |\n|---|---:|---:|---:|")
    for label, model in (("100 rules + model features", {}), ("100 rules alone", None)):
        compiled = compile_ruleset("bench", parse_document(hundred_rules(model)))
        sample = [prune(c, compiled) for c in recorded]
        for c in sample:  # the same answers, or the comparison means nothing
            if compiled.evaluate(c) != cel_evaluate(compiled, c):
                raise SystemExit(f"the scalar path and cel disagree on {c!r}")
        before, after = [], []
        for _ in range(args.rounds):  # interleaved: load on the shared machine hits both alike
            before.append(cpu_per_call(cel_evaluate, compiled, sample))
            after.append(cpu_per_call(CompiledRuleSet.evaluate, compiled, sample))
        b, a = min(before), min(after)
        print(f"| {label} | {b * 1e6:.1f} µs | {a * 1e6:.1f} µs | {b / a:.1f}× |")
    print(
        f"\nCPU (time.process_time) per evaluate(), best of {args.rounds} interleaved rounds over {len(recorded)} contexts; {LOAD_NOTE}."
    )


if __name__ == "__main__":
    main()
