"""The scalar CEL evaluator (generated Python) gives every rule the outcome the ``cel`` package
gives it: hits, misses, missing values, errors, score, action and reasons; values outside its
model send only the rules that read them to their ``cel`` program."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import cel
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mpaas.banking.risk.cel_parse import Unsupported, parse
from mpaas.banking.risk.cel_scalar import ERROR, FALLBACK, LOOKUP, ScalarRules
from mpaas.banking.risk.decision import Reason
from mpaas.banking.risk.errors import InvalidRuleSet
from mpaas.banking.risk.rules import CompiledRuleSet, Evaluation, compile_ruleset, parse_document, prune
from mpaas.banking.risk.store import default_document

from .test_cel_vector import (
    ATOMS,
    CONTEXT,
    EXPRS,
    FIELDS,
    INT_MAX,
    INT_MIN,
    LITERALS,
    PATHS,
    SHIPPED,
    TRANSFER_CONTEXT,
    ruleset,
)

BENCH = Path(__file__).resolve().parents[3] / "bench"

#: Values inside the scalar model: no rule falls back on them.
PLAIN_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT_MIN, max_value=INT_MAX),
    st.integers(min_value=-8, max_value=8),
    st.sampled_from([10, INT_MIN, INT_MAX, 2**53 + 1]),
    st.floats(allow_nan=True),
    st.sampled_from([0.0, -0.0, 2.5, math.inf, -math.inf, math.nan, 9007199254740992.0]),
    st.sampled_from(["", "a", "ab", "abc", "b", "é", "日本", "10"]),
)
PLAIN_LEAF = st.dictionaries(st.sampled_from(FIELDS), PLAIN_VALUES, max_size=3)
PLAIN_ROOT = st.one_of(PLAIN_LEAF, st.none(), st.just(5), st.just("s"))
PLAIN_CONTEXT = st.fixed_dictionaries(
    {},
    optional={
        "txn": PLAIN_ROOT,
        "user": PLAIN_ROOT,
        "vel": st.one_of(
            st.dictionaries(st.sampled_from(("user", "device")), PLAIN_ROOT, max_size=2), st.none()
        ),
    },
)

#: Every path the generators read holds a value: the operators meet the values, not lookups.
FULL_LEAF = st.fixed_dictionaries(dict.fromkeys(FIELDS, PLAIN_VALUES))
FULL_CONTEXT = st.fixed_dictionaries(
    {
        "txn": FULL_LEAF,
        "user": FULL_LEAF,
        "vel": st.fixed_dictionaries({"user": FULL_LEAF, "device": FULL_LEAF}),
    }
)


def reference(compiled: CompiledRuleSet, context: dict[str, Any], snoozed: frozenset[str]) -> Evaluation:
    """What ``CompiledRuleSet.evaluate`` answered before the scalar path: every rule's program."""
    activation = cel.Context(dict(context))
    score, hits, outcomes, errors = 0.0, [], {}, []
    for rule, program in compiled.programs:
        try:
            result = program.execute(activation)
        except LookupError:
            outcomes[rule.name] = "not_evaluated"
            continue
        except Exception:
            result = None
        if result is True:
            outcomes[rule.name] = "snoozed" if rule.name in snoozed else "hit"
            if rule.name not in snoozed:
                score += rule.weight
                hits.append(Reason(rule.name, rule.weight, rule.message))
        elif result is False:
            outcomes[rule.name] = "miss"
        else:
            outcomes[rule.name] = "not_evaluated"
            errors.append(rule.name)
    hits.sort(key=lambda r: -r.weight)
    return Evaluation(score, compiled.doc.thresholds.action(score), tuple(hits), outcomes, tuple(errors))


def check(
    compiled: CompiledRuleSet, contexts: list[dict[str, Any]], snoozed: frozenset[str] = frozenset()
) -> None:
    for context in contexts:
        context = {k: v for k, v in context.items() if k != "_engine"}
        assert compiled.evaluate(context, snoozed) == reference(compiled, context, snoozed), context


def same_values(exprs: list[str], contexts: list[dict[str, Any]]) -> None:
    """Each rule's value (not only its outcome) is the package's: same type, same value (NaN and
    -0.0 included), a lookup where it raises LookupError, an error where it raises another."""
    rules = ScalarRules(exprs)
    programs = [cel.compile(e) for e in exprs]
    for context in contexts:
        activation = cel.Context(dict(context))
        raw, _odd = rules.function(context)  # without the guard that sends an exception to cel
        for expr, program, got, answer in zip(exprs, programs, raw, rules(context), strict=True):
            if answer is FALLBACK:
                continue
            try:
                want: Any = program.execute(activation)
            except LookupError:
                want = LOOKUP
            except Exception:
                want = ERROR
            assert type(got) is type(want) and repr(got) == repr(want), (expr, context, got, want)


def scalar_values(exprs: list[str], context: dict[str, Any]) -> list[Any]:
    """The generated function's answers, without the guard that sends an exception to ``cel``."""
    rules = ScalarRules(exprs)
    values, _odd = rules.function(context)
    return values


def compiled_or_skip(exprs: list[str]) -> CompiledRuleSet:
    try:
        return ruleset(*exprs)
    except InvalidRuleSet:
        assume(False)
        raise


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EXPRS, min_size=1, max_size=4), st.lists(CONTEXT, min_size=1, max_size=6))
def test_outcomes_equal_cel_on_drawn_rules_and_contexts(
    exprs: list[str], contexts: list[dict[str, Any]]
) -> None:
    compiled = compiled_or_skip(exprs)
    contexts = [{k: v for k, v in c.items() if k != "_engine"} for c in contexts]
    same_values(exprs, contexts)
    check(compiled, contexts)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EXPRS, min_size=1, max_size=4), st.lists(PLAIN_CONTEXT, min_size=1, max_size=6))
def test_plain_values_never_fall_back(exprs: list[str], contexts: list[dict[str, Any]]) -> None:
    compiled = compiled_or_skip(exprs)
    for context in contexts:
        assert FALLBACK not in scalar_values(exprs, context)
    same_values(exprs, contexts)
    check(compiled, contexts, frozenset({"r0"}))


OPERATORS = ["&&", "||", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%"]


def _one_operator(operand: st.SearchStrategy[str]) -> list[st.SearchStrategy[str]]:
    """Every operator, function and ``in`` once, over operands drawn from ``operand``."""
    return [
        st.tuples(operand, st.sampled_from(OPERATORS), operand).map(" ".join),
        st.tuples(st.sampled_from(["!", "-", "size"]), operand).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(operand, st.sampled_from(["startsWith", "endsWith", "contains"]), operand).map(
            lambda t: f"{t[0]}.{t[1]}({t[2]})"
        ),
        st.tuples(operand, st.lists(operand, max_size=2)).map(lambda t: f"{t[0]} in [{', '.join(t[1])}]"),
    ]


SHALLOW = st.one_of(
    *_one_operator(ATOMS), st.tuples(ATOMS, ATOMS, ATOMS).map(lambda t: f"{t[0]} ? {t[1]} : {t[2]}")
)
#: Both operands from the paths: every pair of the value kinds meets every operator.
PAIRS = st.one_of(*_one_operator(PATHS))
#: A computed value (arithmetic, size, minus) compared: its exact value decides the outcome.
VALUED = st.tuples(
    st.one_of(
        st.tuples(PATHS, st.sampled_from(["+", "-", "*", "/", "%"]), PATHS).map(lambda t: f"({' '.join(t)})"),
        st.tuples(st.sampled_from(["-", "size"]), PATHS).map(lambda t: f"{t[0]}({t[1]})"),
    ),
    st.sampled_from(["==", "<", ">="]),
    st.one_of(PATHS, LITERALS),
).map(" ".join)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(SHALLOW, PAIRS, VALUED), min_size=4, max_size=12),
    st.lists(st.one_of(FULL_CONTEXT, PLAIN_CONTEXT), min_size=1, max_size=4),
)
def test_every_operator_on_every_pair_of_kinds(exprs: list[str], contexts: list[dict[str, Any]]) -> None:
    compiled = compiled_or_skip(exprs)
    same_values(exprs, contexts)
    check(compiled, contexts)


#: One value of each kind and edge: every operator meets every pair of them below.
KINDS: list[Any] = [None, True, False, 0, 1, -1, 2, -7, 7, INT_MIN, INT_MAX, 2**53 + 1]
KINDS += [0.0, -0.0, 2.0, -7.5, 9007199254740992.0, 1e300, math.inf, -math.inf, math.nan]
KINDS += ["", "a", "ab", "é", "日本"]


@pytest.mark.parametrize(
    "op", ["&&", "||", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "in", "f"]
)
def test_every_operator_on_every_pair_of_values(op: str) -> None:
    exprs = {
        "in": ["txn.a in [txn.b]", "txn.a in [txn.b, 1]", "txn.a in [1.0, txn.b]"],
        "f": [f"txn.a.{name}(txn.b)" for name in ("startsWith", "endsWith", "contains")],
    }.get(op, [f"txn.a {op} txn.b"])
    unary = ["-txn.a", "!txn.a", "size(txn.a)", "txn.a ? txn.b : 1", "has(txn.a)", "txn.a"]
    pairs: list[dict[str, Any]] = [{"txn": {"a": a, "b": b}} for a in KINDS for b in KINDS]
    pairs += [{"txn": {"a": a}} for a in KINDS] + [{"txn": {"b": b}} for b in KINDS] + [{}, {"txn": 5}]
    same_values(exprs + unary, pairs)


@pytest.mark.parametrize(
    ("expr", "context"),
    [
        ("txn.a && txn.b", {"txn": {"b": 5}}),  # lookup on the left, a non-bool on the right
        ("txn.b && txn.a", {"txn": {"b": 5}}),
        ("txn.a || txn.c", {"txn": {"c": None}}),
        ("txn.a && user.a", {"txn": {}}),  # both fail: the right side's failure
        ("user.a && txn.a", {"txn": {}}),
        ("txn.a && false", {"txn": {}}),
        ("txn.a || true", {"txn": {"a": "x"}}),
        ("txn.c && true", {"txn": {"c": True}}),
        ("txn.a == 9007199254740992.0", {"txn": {"a": 2**53 + 1}}),  # through double, as the package
        ("txn.a > 9007199254740992.0", {"txn": {"a": 2**53 + 1}}),
        ("txn.a % txn.b == -1", {"txn": {"a": -7, "b": 2}}),
        ("txn.a / txn.b == -3", {"txn": {"a": -7, "b": 2}}),
        ("txn.a % txn.b == 1", {"txn": {"a": 7, "b": -2}}),
        ("txn.a / txn.b == 1", {"txn": {"a": INT_MIN, "b": -1}}),
        ("txn.a % txn.b == 0", {"txn": {"a": INT_MIN, "b": -1}}),
        ("txn.a % txn.b == 0", {"txn": {"a": 5, "b": 0}}),
        ("txn.a / txn.b > 1.0", {"txn": {"a": 5.0, "b": -0.0}}),
        ("txn.a / txn.b != txn.a / txn.b", {"txn": {"a": 0.0, "b": 0.0}}),
        ("txn.a % txn.b > 0.0", {"txn": {"a": 5.0, "b": 2.0}}),
        ("txn.a * txn.b > 0", {"txn": {"a": 2**62, "b": 2}}),
        ("txn.a + txn.b > 0", {"txn": {"a": INT_MAX, "b": 1}}),
        ("txn.a - txn.b < 0", {"txn": {"a": INT_MIN, "b": 1}}),
        ("-txn.a < 0", {"txn": {"a": INT_MIN}}),
        ("-txn.a", {"txn": {"a": False}}),
        ("size(txn.a) == 2", {"txn": {"a": "é"}}),
        ("txn.a.size() == 6", {"txn": {"a": "日本"}}),
        ("size(txn.a) == 1", {"txn": {"a": 5}}),
        ("txn.a.startsWith(txn.b)", {"txn": {"a": 5}}),  # the argument's failure first
        ("txn.a.endsWith(user.b)", {"txn": {}}),
        ("txn.a.contains(txn.b)", {"txn": {"a": "abc", "b": ""}}),
        ("txn.a in [1, txn.b, user.c]", {"txn": {"a": 1}}),
        ("txn.a in [txn.b, 1]", {"txn": {"a": 1.0, "b": "x"}}),
        ("txn.a in []", {"txn": {"a": None}}),
        ("txn.a ? txn.b : txn.c", {"txn": {"a": 1, "b": True}}),
        ("txn.a ? txn.b : txn.c", {"txn": {"a": False, "b": True}}),
        ("txn.a == null", {"txn": {"a": None}}),
        ("txn.a < null", {"txn": {"a": None}}),
        ("txn.a < txn.b", {"txn": {"a": math.nan, "b": 1}}),
        ("txn.a == txn.b", {"txn": {"a": True, "b": 1}}),
        ("txn.a < txn.b", {"txn": {"a": False, "b": True}}),
        ("txn.a + txn.b == 'ab'", {"txn": {"a": "a", "b": "b"}}),
        ("txn.a.b == 1", {"txn": {"a": 5}}),
        ("has(txn.a.b)", {"txn": {"a": None}}),
        ("has(txn.a.b)", {"txn": {}}),
        ("has(geo.a)", {"txn": {}}),
        ("txn.a", {"txn": {"a": 1}}),
    ],
)
def test_the_package_corners(expr: str, context: dict[str, Any]) -> None:
    check(ruleset(expr), [context])


@settings(max_examples=300, deadline=None)
@given(st.lists(TRANSFER_CONTEXT, min_size=1, max_size=6))
def test_shipped_and_bench_rules_over_drawn_contexts(contexts: list[dict[str, Any]]) -> None:
    check(ruleset(*SHIPPED), contexts)
    check(_bench_rules(), contexts, frozenset({"gen_003", "user_velocity_1h"}))


def _bench_rules() -> CompiledRuleSet:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    from risk_support import hundred_rules

    return compile_ruleset("bench", parse_document(hundred_rules({})))


def test_shipped_and_bench_rules_on_recorded_contexts_run_without_cel() -> None:
    from mpaas.banking.risk.modelcentre.replay import Featurizer
    from mpaas.banking.risk.modelcentre.synthetic import transfers

    shipped = default_document("transfer")
    assert shipped is not None
    sets = [compile_ruleset("shipped", shipped), _bench_rules()]
    featurizer = Featurizer()
    hits = 0
    for t in transfers(99, 400):
        full = featurizer.context(t.context(), t.at)
        full["lists"] = {"deny": {"counterparty": False, "device": t.label != "honest"}}
        featurizer.commit(t.context(), t.at)
        for compiled in sets:
            context = prune(full, compiled)
            assert FALLBACK not in compiled._scalar(context)
            result = compiled.evaluate(context)
            assert result == reference(compiled, context, frozenset())
            hits += len(result.reasons)
    assert hits > 0


def test_the_rules_it_does_not_translate_run_their_program() -> None:
    exprs = ["txn.a.exists(x, x > 1)", "txn.b > 1", "int(txn.b) > 1"]
    with pytest.raises(Unsupported):
        parse(exprs[0])
    compiled = ruleset(*exprs)
    context = {"txn": {"a": [0, 2], "b": 2}}
    assert compiled._scalar(context) == [FALLBACK, True, FALLBACK]
    assert compiled.evaluate(context).outcomes == {"r0": "hit", "r1": "hit", "r2": "hit"}


@pytest.mark.parametrize(
    "odd",
    [2**63, -(2**63) - 1, 2**70, [1], {"x": 1}, b"x", (1,), "\ud800"],
)
def test_a_value_outside_the_model_sends_only_its_readers_to_cel(odd: Any) -> None:
    exprs = ["txn.a > 1", "txn.b == 2", "txn.a == 1 || txn.b == 2", "has(txn.a)", "txn.a.c == 1"]
    context = {"txn": {"a": odd, "b": 2}}
    values = ScalarRules(exprs)(context)
    assert values[:4] == [FALLBACK, True, FALLBACK, True]
    if type(odd) is not dict:  # a field of a map is walked: ``txn.a.c`` is a missing value
        assert values[4] is FALLBACK
    compiled = ruleset(*exprs)
    try:
        expected = reference(compiled, context, frozenset())
    except ValueError:  # a value the package cannot convert: the decision fails, as before
        with pytest.raises(ValueError):
            compiled.evaluate(context)
        return
    assert compiled.evaluate(context) == expected


def test_rules_past_the_translation_budget_run_their_programs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's compile() of the generated function costs about 40 µs a line and runs when a
    rule set is loaded, so a rule set of hundreds of long rules is translated only up to a
    budget of subexpressions; the rules after it run on ``cel``, with the same outcomes."""
    from mpaas.banking.risk import cel_scalar

    monkeypatch.setattr(cel_scalar, "MAX_NODES", 20)
    expr = " && ".join(f"txn.amount > {i}" for i in range(4))  # 15 subexpressions
    assert ScalarRules([expr, expr, expr])({"txn": {"amount": 5}}) == [True, FALLBACK, FALLBACK]
    compiled = ruleset(expr, expr, expr)
    assert compiled.evaluate({"txn": {"amount": 5}}).outcomes == {"r0": "hit", "r1": "hit", "r2": "hit"}


def test_generating_a_long_chain_never_hashes_a_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: shared subexpressions were found by hashing the parsed nodes, and a frozen
    dataclass hashes its whole subtree each time: quadratic in a long ``&&`` chain (16 s for 100
    rules of 250 conditions). Subexpressions are now numbered bottom-up instead."""
    from mpaas.banking.risk import cel_parse as cp

    hashed: list[type] = []
    for kind in (cp.Binary, cp.Unary, cp.InList, cp.Cond, cp.Call, cp.Const, cp.Path, cp.Has):
        monkeypatch.setattr(kind, "__hash__", lambda node: hashed.append(type(node)) or id(node))
    expr = " && ".join(f"txn.amount > {i}" for i in range(60))
    rules = ScalarRules([expr, expr])
    assert hashed == []
    assert rules({"txn": {"amount": 100}}) == [True, True]
    assert rules.source.count(" > ") < 70  # the second rule reuses the first one's lines
