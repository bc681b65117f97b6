"""The columnar CEL evaluator of backtests gives every rule the outcome ``CompiledRuleSet.evaluate``
gives it, row by row: hits, misses, missing values, nulls, wrong types, overflows, errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mpaas.banking.risk.backtest_columns import ERRORED, HIT, MISS, NOT_EVALUATED, Page, plan
from mpaas.banking.risk.cel_parse import Unsupported, parse
from mpaas.banking.risk.errors import InvalidRuleSet
from mpaas.banking.risk.rules import CompiledRuleSet, compile_ruleset, parse_document

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(
        [0, 1, -1, 2, 5, 10, 1000, -7, INT_MIN, INT_MAX, INT_MAX - 1, 2**53 + 1, 2**63, 2**64 + 1]
    ),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0.0, -0.0, 0.5, 2.5, -3.0, 1e300, math.inf, -math.inf, math.nan, 9007199254740992.0]),
    st.floats(allow_nan=True),
    st.sampled_from(["", "a", "ab", "abc", "b", "é", "日本", "10"]),
    st.sampled_from([[1], {"x": 1}, []]),
)
FIELDS = ("a", "b", "c")
LEAF = st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=3)
ROOT = st.one_of(LEAF, st.none(), st.just(5), st.just("s"), st.just([1]))
CONTEXT = st.fixed_dictionaries(
    {},
    optional={
        "txn": ROOT,
        "user": ROOT,
        "vel": st.one_of(st.dictionaries(st.sampled_from(("user", "device")), ROOT, max_size=2), st.none()),
        "_engine": st.just({"snoozed": []}),
    },
)

PATHS = st.sampled_from(
    ["txn.a", "txn.b", "txn.c", "user.a", "user.b", "vel.user.a", "vel.device.b", "device.a", "txn.a.b"]
)
LITERALS = st.sampled_from(
    [
        "0",
        "1",
        "-1",
        "5",
        "10",
        "2.5",
        "0.0",
        "-0.0",
        "1e300",
        "9223372036854775807",
        "-9223372036854775808",
        "'abc'",
        "''",
        "'a'",
        '"é"',
        "true",
        "false",
        "null",
        "100.0",
        "3",
    ]
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.sampled_from(["&&", "||", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%"])
    return st.one_of(
        st.tuples(children, binary, children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["!", "-"]), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
        st.tuples(children, st.lists(children, max_size=3)).map(lambda t: f"({t[0]} in [{', '.join(t[1])}])"),
        st.tuples(children, st.sampled_from(["startsWith", "endsWith", "contains"]), children).map(
            lambda t: f"({t[0]}).{t[1]}({t[2]})"
        ),
        children.map(lambda c: f"size({c})"),
        children.map(lambda c: f"({c}).size()"),
    )


ATOMS = st.one_of(PATHS, LITERALS, PATHS.map(lambda p: f"has({p})"))
EXPRS = st.recursive(ATOMS, _combine, max_leaves=6)


def ruleset(*exprs: str) -> CompiledRuleSet:
    doc = parse_document(
        {
            "thresholds": {"challenge": 1, "deny": 2},
            "rules": [{"name": f"r{i}", "expr": e, "weight": 1, "message": "m"} for i, e in enumerate(exprs)],
        }
    )
    return compile_ruleset("t@1", doc)


def reference(compiled: CompiledRuleSet, context: dict[str, Any]) -> list[int]:
    result = compiled.evaluate({k: v for k, v in context.items() if k != "_engine"})
    codes = {"hit": HIT, "miss": MISS}
    out = []
    for rule in compiled.doc.rules:
        outcome = result.outcomes[rule.name]
        if outcome == "not_evaluated":
            out.append(ERRORED if rule.name in result.errors else NOT_EVALUATED)
        else:
            out.append(codes[outcome])
    return out


def check(exprs: list[str], contexts: list[dict[str, Any]]) -> None:
    try:
        compiled = ruleset(*exprs)
    except InvalidRuleSet:
        assume(False)
        raise
    plans = plan(compiled)
    one_pass = Page(contexts)  # every path read in one generated pass, as a backtest does
    one_pass.columns.fetch(key for p in plans for key in p.keys)
    for page in (one_pass, Page(contexts)):
        columnar = [page.outcomes(p).tolist() for p in plans]
        for k, context in enumerate(contexts):
            expected = reference(compiled, context)
            got = [codes[k] for codes in columnar]
            assert got == expected, (exprs, context)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EXPRS, min_size=1, max_size=3), st.lists(CONTEXT, min_size=1, max_size=6))
def test_columnar_outcomes_equal_row_wise_cel(exprs: list[str], contexts: list[dict[str, Any]]) -> None:
    for expr in exprs:
        try:
            parse(expr)
        except Unsupported:
            pytest.fail(f"the generated form {expr!r} should translate")
    check(exprs, contexts)


SHIPPED = [
    "vel.user.count_1h >= 10",
    "vel.user.count_30d >= 3 && txn.amount > 200000 && txn.amount > 5 * vel.user.avg_30d",
    "device.first_seen_days < 1 && txn.amount >= 500000",
    "geo.km_from_last > 100.0 && geo.kmh_from_last > 900.0",
    "lists.deny.counterparty",
    "txn.external && txn.amount >= 2000000",
    "device.rooted == true && txn.amount >= 500000",
    "vel.device.sum_24h >= 600000 && txn.amount > 3000",
]


@pytest.mark.parametrize("expr", SHIPPED)
def test_the_shipped_and_generated_forms_translate(expr: str) -> None:
    parse(expr)


#: A transfer's context as the shipped and bench rules read it, each value drawn from VALUES.
TRANSFER_CONTEXT = st.fixed_dictionaries(
    {},
    optional={
        "txn": st.fixed_dictionaries({}, optional={"amount": VALUES, "external": VALUES}),
        "device": st.fixed_dictionaries({}, optional={"first_seen_days": VALUES, "rooted": VALUES}),
        "geo": st.fixed_dictionaries({}, optional={"km_from_last": VALUES, "kmh_from_last": VALUES}),
        "lists": st.fixed_dictionaries(
            {"deny": st.fixed_dictionaries({}, optional={"counterparty": VALUES, "device": VALUES})}
        ),
        "vel": st.fixed_dictionaries(
            {},
            optional={
                k: st.fixed_dictionaries(
                    {},
                    optional={
                        f"{m}_{w}": VALUES for m in ("count", "sum", "avg") for w in ("1h", "24h", "30d")
                    },
                )
                for k in ("user", "device")
            },
        ),
    },
)


@settings(max_examples=200, deadline=None)
@given(st.lists(TRANSFER_CONTEXT, min_size=1, max_size=8))
def test_shipped_rules_over_drawn_contexts(contexts: list[dict[str, Any]]) -> None:
    check(SHIPPED, contexts)


@pytest.mark.parametrize(
    "expr",
    [
        "txn.a.exists(x, x > 1)",
        "int(txn.a) > 1",
        "txn.a[0] == 1",
        "txn.a > 1u",
        "txn.a.matches('x')",
        "'a\\tb' == txn.a",
    ],
)
def test_what_it_does_not_translate_runs_row_wise(expr: str) -> None:
    with pytest.raises(Unsupported):
        parse(expr)
    compiled = ruleset(expr)
    (rule,) = plan(compiled)
    assert rule.node is None
    contexts: list[dict[str, Any]] = [{"txn": {"a": [2]}}, {"txn": {"a": 2.5}}, {"txn": {}}, {"user": {}}]
    assert Page(contexts).outcomes(rule).tolist() == [reference(compiled, c)[0] for c in contexts]
