"""CEL rule sets on their own: validation, actions, null handling, and each shipped default
rule on a crafted context (a hit) and on a benign one (a miss)."""

from __future__ import annotations

from typing import Any

import pytest

from mpaas.banking.risk.errors import InvalidRuleSet
from mpaas.banking.risk.rules import compile_ruleset, parse_document, prune
from mpaas.banking.risk.store import default_document

YUAN = 100


def ruleset(*rules: tuple[str, str, float], challenge: float = 50, deny: float = 100) -> Any:
    doc = parse_document(
        {
            "thresholds": {"challenge": challenge, "deny": deny},
            "rules": [{"name": n, "expr": e, "weight": w, "message": n} for n, e, w in rules],
        }
    )
    return compile_ruleset("test@1", doc)


@pytest.mark.parametrize(
    ("amount", "action", "score"),
    [(10 * YUAN, "allow", 0.0), (600 * YUAN, "challenge", 60.0), (6000 * YUAN, "deny", 130.0)],
)
def test_each_action_follows_the_thresholds(amount: int, action: str, score: float) -> None:
    rules = ruleset(("big", "txn.amount > 50000", 60), ("huge", "txn.amount > 500000", 70))
    result = rules.evaluate({"txn": {"amount": amount}})
    assert (result.action, result.score) == (action, score)
    assert [r.rule for r in result.reasons] == [
        name for name, hit in (("huge", amount > 500000), ("big", amount > 50000)) if hit
    ]


@pytest.mark.parametrize(
    "context",
    [
        {"txn": {"amount": 900000}, "device": {}},  # missing field
        {"txn": {"amount": 900000}},  # missing variable
        {"txn": {"amount": 900000}, "device": {"first_seen_days": None}},  # explicit null
        {"txn": {"amount": 900000}, "device": {"first_seen_days": "new"}},  # wrong type
    ],
)
def test_a_rule_that_reads_a_missing_or_null_value_is_not_evaluated_and_never_a_hit(
    context: dict[str, Any],
) -> None:
    rules = ruleset(
        ("new_device", "device.first_seen_days < 1 && txn.amount > 100", 200),
        ("not_boolean", "txn.amount", 200),
        ("divides_by_zero", "txn.amount / 0 > 1", 200),
        ("large", "txn.amount > 100", 10),
    )
    result = rules.evaluate(context)
    assert result.outcomes == {
        "new_device": "not_evaluated",
        "not_boolean": "not_evaluated",
        "divides_by_zero": "not_evaluated",
        "large": "hit",
    }
    assert (result.action, result.score) == ("allow", 10.0)


def test_short_circuit_makes_a_guarded_rule_a_miss_not_an_error() -> None:
    rules = ruleset(("guarded", "has(device.first_seen_days) && device.first_seen_days < 1", 60))
    assert rules.evaluate({"device": {}}).outcomes == {"guarded": "miss"}


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (
            {
                "thresholds": {"challenge": 5, "deny": 10},
                "rules": [{"name": "x", "expr": "txn.amount >", "weight": 1}],
            },
            "rule 'x' does not compile",
        ),
        (
            {
                "thresholds": {"challenge": 5, "deny": 10},
                "rules": [{"name": "x", "expr": "foo.bar > 1", "weight": 1}],
            },
            "unknown variable(s) foo",
        ),
        (
            {
                "thresholds": {"challenge": 10, "deny": 5},
                "rules": [{"name": "x", "expr": "true", "weight": 1}],
            },
            "lower than thresholds.deny",
        ),
        (
            {
                "thresholds": {"challenge": 5, "deny": 10},
                "rules": [{"name": "Bad Name", "expr": "true", "weight": 1}],
            },
            "'name' must match",
        ),
        (
            {
                "thresholds": {"challenge": 5, "deny": 10},
                "rules": [{"name": "x", "expr": "true", "weight": True}],
            },
            "must be a number",
        ),
        ({"thresholds": {"challenge": 5, "deny": 10}, "rules": []}, "non-empty list"),
    ],
)
def test_a_bad_rule_set_is_refused_with_a_clear_message(document: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidRuleSet) as caught:
        parse_document(document)
    assert fragment in caught.value.message
    assert caught.value.status == 400


def test_only_the_paths_the_rules_read_are_kept() -> None:
    rules = ruleset(("v", "vel.user.count_1h > 3 && txn.amount > 1", 1), ("l", "lists.deny.device", 1))
    context = {
        "txn": {"amount": 5, "memo": "x"},
        "vel": {"user": {"count_1h": 4, "count_24h": 9}, "device": {"count_1h": 1}},
        "lists": {"deny": {"device": True, "ip": False}},
        "net": {"ip": "10.0.0.1"},
    }
    assert prune(context, rules) == {
        "txn": {"amount": 5},
        "vel": {"user": {"count_1h": 4}},
        "lists": {"deny": {"device": True}},
    }


BENIGN: dict[str, Any] = {
    "txn": {"amount": 300 * YUAN, "counterparty": "c_shop"},
    "device": {"first_seen_days": 200, "rooted": False},
    "geo": {"km_from_last": 3.2, "kmh_from_last": 1.5},
    "vel": {
        "user": {"count_1h": 1, "count_24h": 4, "count_30d": 30, "avg_30d": 250 * YUAN},
        "device": {"count_1h": 1, "count_24h": 4},
    },
    "lists": {"deny": {"counterparty": False, "device": False}},
}
ATTACKS: dict[str, dict[str, Any]] = {
    "user_velocity_1h": {"vel": {"user": BENIGN["vel"]["user"] | {"count_1h": 10}}},
    "user_velocity_24h": {"vel": {"user": BENIGN["vel"]["user"] | {"count_24h": 50}}},
    "device_velocity_1h": {"vel": {"device": {"count_1h": 15, "count_24h": 15}}},
    "device_velocity_24h": {"vel": {"device": {"count_1h": 1, "count_24h": 60}}},
    "amount_vs_history": {"txn": {"amount": 2500 * YUAN, "counterparty": "c_shop"}},
    "new_device_large_amount": {
        "txn": {"amount": 5000 * YUAN, "counterparty": "c_shop"},
        "device": {"first_seen_days": 0.2},
        "vel": {"user": BENIGN["vel"]["user"] | {"avg_30d": 4000 * YUAN}},
    },
    "impossible_travel": {"geo": {"km_from_last": 1080.0, "kmh_from_last": 6480.0}},
    "counterparty_on_deny_list": {"lists": {"deny": {"counterparty": True, "device": False}}},
    "device_on_deny_list": {"lists": {"deny": {"counterparty": False, "device": True}}},
}


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in change.items():
        out[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def test_the_default_rules_all_miss_on_a_benign_transfer() -> None:
    doc = default_document("transfer")
    assert doc is not None
    result = compile_ruleset("default", doc).evaluate(BENIGN)
    assert set(result.outcomes) == set(ATTACKS)
    assert set(result.outcomes.values()) == {"miss"}
    assert result.action == "allow"


@pytest.mark.parametrize("rule", sorted(ATTACKS))
def test_each_default_rule_hits_on_its_crafted_context(rule: str) -> None:
    doc = default_document("transfer")
    assert doc is not None
    result = compile_ruleset("default", doc).evaluate(_merge(BENIGN, ATTACKS[rule]))
    hits = {name for name, outcome in result.outcomes.items() if outcome == "hit"}
    assert hits == {rule}
    weight = next(r.weight for r in doc.rules if r.name == rule)
    assert result.score == weight
    # a rule weighted under the challenge threshold only adds to the score (with the model's)
    expected = ("challenge", "deny") if weight >= doc.thresholds.challenge else ("allow",)
    assert result.action in expected


def test_the_engine_setting_accepts_only_cel_or_off() -> None:
    from mpaas.errors import ConfigError
    from mpaas.settings import Settings

    assert Settings.from_env({"MPAAS_RISK_ENGINE": "OFF"}).risk_engine == "off"
    with pytest.raises(ConfigError, match="MPAAS_RISK_ENGINE"):
        Settings.from_env({"MPAAS_RISK_ENGINE": "maybe"})
