"""Composition of one decision from its recorded inputs: lists first, then the rules, then the
model's share, then thresholds, the allow list and the fail mode.

``compose`` is a pure function of a compiled rule set and a decision's stored ``inputs``, so
the engine, the shadow evaluation and the backtest all decide the same way, and a stored
decision replays bit for bit. What the engine knew besides the rules' values sits in the
inputs under ``_engine`` (never visible to CEL):

- ``deny`` / ``allow``: the entities (``device``, ``counterparty`` ...) found on those lists;
- ``degraded``: the feature sources that failed (``counters``, ``model``);
- ``snoozed``: rules snoozed for an entity of this decision;
- ``model``: ``{name, version, score, weight}`` when the scene's model scored (a version
  that names another model, or none, ignores the recorded score).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mpaas.banking.risk.decision import ACTIONS, Action, Reason
from mpaas.banking.risk.rules import CompiledRuleSet, Outcome

FACTS = "_engine"
UNAVAILABLE = {
    "counters": Reason("counters_unavailable", 0.0, "velocity features could not be read; stepping up"),
    "model": Reason("model_unavailable", 0.0, "the scoring model did not answer in time; stepping up"),
}
ALLOWED = Reason("allow_list", 0.0, "on the allow list: no manual review")


@dataclass(frozen=True)
class Composed:
    action: Action
    score: float
    reasons: tuple[Reason, ...]
    outcomes: dict[str, Outcome]
    errors: tuple[str, ...] = ()


def compose(compiled: CompiledRuleSet, inputs: Mapping[str, Any]) -> Composed:
    facts: Mapping[str, Any] = inputs.get(FACTS) or {}
    deny = facts.get("deny") or []
    if deny:  # a deny list short-circuits: no rule runs
        weight = compiled.doc.thresholds.deny
        listed = tuple(Reason(f"deny_list_{e}", weight, f"the {e} is on the deny list") for e in deny)
        return Composed("deny", weight, listed, {})
    context = {k: v for k, v in inputs.items() if k != FACTS}
    result = compiled.evaluate(context, frozenset(facts.get("snoozed") or ()))
    score, reasons = result.score, list(result.reasons)
    share = model_share(compiled, facts)
    if share is not None:
        score += share
        if share > 0:
            model = facts["model"]
            reasons.append(
                Reason(f"model_{model['name']}", share, f"model {model['name']} scored {model['score']:.3f}")
            )
            reasons.sort(key=lambda r: -r.weight)
    action = settle(compiled, facts, score)
    if facts.get("allow") and compiled.doc.thresholds.action(score) == "review":
        reasons.append(ALLOWED)
    if compiled.fail_mode == "closed":
        for source in facts.get("degraded") or ():
            reasons.append(UNAVAILABLE.get(source, Reason(f"{source}_unavailable", 0.0, "stepping up")))
    return Composed(action, score, tuple(reasons), dict(result.outcomes), result.errors)


def model_share(compiled: CompiledRuleSet, facts: Mapping[str, Any]) -> float | None:
    """What the recorded model score adds, at this version's weight (a backtest or shadow may
    re-weigh it); None when the version names no model or another one."""
    model, spec = facts.get("model"), compiled.doc.model
    if model is None or spec is None or model["name"] != spec.name:
        return None
    return spec.weight * float(model["score"])


def settle(compiled: CompiledRuleSet, facts: Mapping[str, Any], score: float) -> Action:
    """The action for a final ``score``: thresholds, the allow list lifting a review, and a
    scene that fails closed stepping up to at least ``challenge`` when a source failed."""
    action = compiled.doc.thresholds.action(score)
    if facts.get("allow") and action == "review":
        action = "allow"
    stepped_up = compiled.fail_mode == "closed" and facts.get("degraded")
    if stepped_up and ACTIONS.index(action) < ACTIONS.index("challenge"):
        action = "challenge"
    return action
