"""The columnar path of a backtest: a page of recorded inputs → each rule's outcome → actions.

Every rule the parser translates (``cel_parse``) runs once per page over columns
(``cel_vector``); the rows whose values fall outside the columnar model, and every rule it
does not translate, run row-wise with the rule's compiled ``cel`` program, exactly as
``CompiledRuleSet.evaluate`` does. The score is summed in rule order as ``evaluate`` sums
it, so it is bit-identical, and the rest of :func:`compose` (deny list, model share,
thresholds, allow list, fail mode) is applied per row in :func:`finish`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cel
import numpy as np

from mpaas.banking.risk.cel_columns import Columns, Key
from mpaas.banking.risk.cel_parse import Node, Unsupported, parse, reads
from mpaas.banking.risk.cel_vector import BOOL, LOOKUP, Vec, evaluate
from mpaas.banking.risk.compose import FACTS, model_share, settle
from mpaas.banking.risk.decision import Action
from mpaas.banking.risk.rules import CompiledRuleSet, Rule

MISS, HIT, NOT_EVALUATED, ERRORED = 0, 1, 2, 3


@dataclass(frozen=True)
class RulePlan:
    rule: Rule
    program: Any
    #: The parsed expression, or None when the rule runs row-wise.
    node: Node | None
    keys: tuple[Key, ...] = ()


def plan(compiled: CompiledRuleSet) -> list[RulePlan]:
    out = []
    for rule, program in compiled.programs:
        try:
            node: Node | None = parse(rule.expr)
        except Unsupported:
            node = None
        out.append(RulePlan(rule, program, node, tuple(sorted(reads(node))) if node is not None else ()))
    return out


def row_outcome(program: Any, activation: Any) -> int:
    """One rule on one row, as ``CompiledRuleSet.evaluate`` classifies it."""
    try:
        result = program.execute(activation)
    except LookupError:
        return NOT_EVALUATED
    except Exception:
        return ERRORED
    if result is True:
        return HIT
    return MISS if result is False else ERRORED


class Page:
    """One page of recorded inputs, with its columns built on first use."""

    def __init__(self, inputs: Sequence[Mapping[str, Any]]) -> None:
        self.inputs = inputs
        self.n = len(inputs)
        self.columns = Columns(inputs)
        self.memo: dict[Node, Vec] = {}
        self._activations: dict[int, Any] = {}

    def activation(self, k: int) -> Any:
        if k not in self._activations:
            self._activations[k] = cel.Context({a: v for a, v in self.inputs[k].items() if a != FACTS})
        return self._activations[k]

    def outcomes(self, rule: RulePlan) -> np.ndarray:
        """The outcome code of ``rule`` on every row."""
        if rule.node is None:
            return np.array([row_outcome(rule.program, self.activation(k)) for k in range(self.n)], np.int8)
        vec = evaluate(rule.node, {key: self.columns.get(key) for key in rule.keys}, self.n, self.memo)
        if vec.kind() == BOOL:
            codes = vec.i.astype(np.int8)
        else:
            codes = np.full(self.n, ERRORED, np.int8)
            codes[vec.tag == LOOKUP] = NOT_EVALUATED
            is_bool = vec.tag == BOOL
            codes[is_bool] = vec.i[is_bool].astype(np.int8)
        odd = [self.columns.odd[key] for key in rule.keys if self.columns.odd[key].any()]
        for k in np.flatnonzero(np.logical_or.reduce(odd)) if odd else ():
            codes[k] = row_outcome(rule.program, self.activation(int(k)))
        return codes


def scores(compiled: CompiledRuleSet, plans: Sequence[RulePlan], page: Page) -> np.ndarray:
    """Σ weight of the hits (snoozed hits excluded), summed in rule order as ``evaluate`` does:
    adding 0.0 for a miss leaves a sum of non-negative weights exactly as it was."""
    snoozed: dict[int, frozenset[str]] = {}
    for k, inputs in enumerate(page.inputs):
        facts = inputs.get(FACTS) or {}
        if facts.get("snoozed"):
            snoozed[k] = frozenset(facts["snoozed"])
    page.columns.fetch(key for rule in plans for key in rule.keys)
    score = np.zeros(page.n, np.float64)
    for rule in plans:
        hit = page.outcomes(rule) == HIT
        for k, names in snoozed.items():
            if rule.rule.name in names:
                hit[k] = False
        score += hit * rule.rule.weight
    return score


def finish(compiled: CompiledRuleSet, inputs: Mapping[str, Any], rule_score: float) -> Action:
    """The action :func:`compose` gives ``inputs`` when its rules score ``rule_score``."""
    facts: Mapping[str, Any] = inputs.get(FACTS) or {}
    if facts.get("deny") or []:
        return "deny"
    share = model_share(compiled, facts)
    return settle(compiled, facts, rule_score if share is None else rule_score + share)


def actions(
    compiled: CompiledRuleSet, plans: Sequence[RulePlan], inputs: Sequence[Mapping[str, Any]]
) -> list[Action]:
    """The action of each decision in ``inputs`` under ``compiled``, as :func:`compose` answers."""
    page = Page(inputs)
    score = scores(compiled, plans, page)
    out = by_thresholds(compiled, score)
    for k, row in enumerate(inputs):
        if row.get(FACTS):  # lists, a model score, degraded sources, snoozes: as compose does
            out[k] = finish(compiled, row, float(score[k]))
    return out


def by_thresholds(compiled: CompiledRuleSet, score: np.ndarray) -> list[Action]:
    """``Thresholds.action`` of each score (the same float comparisons, in the same order)."""
    t = compiled.doc.thresholds
    out = np.full(len(score), "allow", dtype=object)
    out[score >= t.challenge] = "challenge"
    if t.review is not None:
        out[score >= t.review] = "review"
    out[score >= t.deny] = "deny"
    return list(out)
