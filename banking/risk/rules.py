"""Rule sets: validation, compilation (once per version) and evaluation of CEL rules.

A rule is a CEL expression over the read-only context (``txn``, ``user``, ``device``,
``net``, ``geo``, ``vel``, ``lists``) that answers true (hit) or false (miss). A rule that
reads a missing value, meets a null or a type mismatch, or answers anything but a boolean
is *not evaluated*: it adds nothing to the score, and is counted apart. The score is
``Σ weight`` of the hits; thresholds turn it into an action.

Compilation also records which context paths the rules read (``vel.user.count_1h``), so
the engine fetches and converts only those: building a CEL context costs 2–5 µs a value,
more than evaluating a rule (about 1 µs).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import cel

from mpaas.banking.risk.cel_scalar import ERROR, FALLBACK, LOOKUP, ScalarRules
from mpaas.banking.risk.decision import Action, Reason
from mpaas.banking.risk.errors import InvalidRuleSet

Outcome = Literal["hit", "miss", "not_evaluated", "snoozed"]
ROOTS = ("txn", "user", "device", "net", "geo", "vel", "lists", "model")
FAIL_MODES = ("open", "closed")
MAX_FEATURES = 200
FEATURE_PATH_RE = r"(txn|user|device|net|geo|vel|lists)(\.[A-Za-z_][A-Za-z0-9_]{0,63}){1,2}"
SCENE_RE = r"[a-z][a-z0-9_]{0,31}"
NAME_RE = r"[a-z][a-z0-9_]{0,63}"
MAX_RULES = 500
MAX_EXPR = 4096
MAX_MESSAGE = 256
MAX_WEIGHT = 1_000_000.0
#: Comprehension macros bind their own names, so their expressions may name other variables.
MACROS = re.compile(r"\.(all|exists|exists_one|map|filter)\(")
PATH = re.compile(r"(?<![\w.])(" + "|".join(ROOTS) + r")((?:\.[A-Za-z_]\w*){0,2})")


@dataclass(frozen=True)
class Rule:
    name: str
    expr: str
    weight: float
    message: str


@dataclass(frozen=True)
class Thresholds:
    """``score >= deny`` denies, else ``score >= review`` (when set) holds for an analyst,
    else ``score >= challenge`` challenges, else allows."""

    challenge: float
    deny: float
    review: float | None = None

    def action(self, score: float) -> Action:
        if score >= self.deny:
            return "deny"
        if self.review is not None and score >= self.review:
            return "review"
        if score >= self.challenge:
            return "challenge"
        return "allow"

    def to_dict(self) -> dict[str, float]:
        out = {"challenge": self.challenge, "deny": self.deny}
        if self.review is not None:
            out["review"] = self.review
        return out


@dataclass(frozen=True)
class ModelSpec:
    """A rule set's ``model:`` section (the contract in decision.py): which model scores the
    scene, what its score weighs, and the context paths it reads, in order."""

    name: str
    weight: float
    features: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "features": list(self.features)}


@dataclass(frozen=True)
class RuleSetDoc:
    """A validated rule set document, as stored and as shown."""

    thresholds: Thresholds
    rules: tuple[Rule, ...]
    model: ModelSpec | None = None
    #: ``open`` or ``closed`` when a feature source or the model fails; None: the scene's default.
    fail_mode: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "thresholds": self.thresholds.to_dict(),
            "rules": [
                {"name": r.name, "expr": r.expr, "weight": r.weight, "message": r.message} for r in self.rules
            ],
        }
        if self.model is not None:
            out["model"] = self.model.to_dict()
        if self.fail_mode is not None:
            out["fail_mode"] = self.fail_mode
        return out

    def digest(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Evaluation:
    score: float
    action: Action
    reasons: tuple[Reason, ...]
    outcomes: dict[str, Outcome]
    #: Rules not evaluated because of an error (a type mismatch, a division by zero, a
    #: non-boolean answer) rather than a missing value; they are also ``not_evaluated``.
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompiledRuleSet:
    """A rule set ready to run: its programs, and the context paths they read."""

    version: str
    doc: RuleSetDoc
    programs: tuple[tuple[Rule, Any], ...]
    #: root → the fields read under it (``("user", "count_1h")`` for ``vel``), or None for all.
    reads: Mapping[str, frozenset[tuple[str, ...]] | None] = field(default_factory=dict)
    fail_mode: str = "closed"
    #: (name, program, weight, the reason a hit gives) per rule: no attribute lookups and no
    #: Reason built per hit on the decision path (a Reason is immutable, so one is shared).
    _run: tuple[tuple[str, Any, float, Reason], ...] = field(init=False, repr=False, compare=False)
    #: The rules as generated Python with the package's semantics (``cel_scalar``); a rule it
    #: does not translate, or a value outside its model, runs the rule's program instead.
    _scalar: ScalarRules = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        run = tuple((r.name, p, r.weight, Reason(r.name, r.weight, r.message)) for r, p in self.programs)
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_scalar", ScalarRules([r.expr for r, _p in self.programs]))

    def evaluate(self, context: Mapping[str, Any], snoozed: frozenset[str] = frozenset()) -> Evaluation:
        """Run every rule on ``context`` (already pruned to :attr:`reads`). A hit of a rule in
        ``snoozed`` is recorded as ``snoozed`` and adds nothing."""
        activation = None  # the cel context, built only if a rule falls back to its program
        score = 0.0
        hits: list[Reason] = []
        outcomes: dict[str, Outcome] = {}
        errors: list[str] = []
        for (name, program, weight, reason), result in zip(self._run, self._scalar(context), strict=True):
            if result is FALLBACK:
                if activation is None:
                    activation = cel.Context(dict(context))
                try:
                    result = program.execute(activation)
                except LookupError:  # a missing value
                    result = LOOKUP
                except Exception:  # null, type mismatch, division by zero: not evaluated
                    result = ERROR
            if result is False:
                outcomes[name] = "miss"
            elif result is True:
                if name in snoozed:
                    outcomes[name] = "snoozed"
                    continue
                outcomes[name] = "hit"
                score += weight
                hits.append(reason)
            elif result is LOOKUP:
                outcomes[name] = "not_evaluated"
            else:
                outcomes[name] = "not_evaluated"
                errors.append(name)
        hits.sort(key=lambda r: -r.weight)  # reasons in order of contribution
        return Evaluation(score, self.doc.thresholds.action(score), tuple(hits), outcomes, tuple(errors))

    def reads_any(self, root: str, *prefix: str) -> bool:
        """Whether a rule reads ``root`` (under ``prefix``, when given)."""
        if root not in self.reads:
            return False
        paths = self.reads[root]
        return paths is None or not prefix or any(p[: len(prefix)] == prefix for p in paths)


def parse_document(data: Any) -> RuleSetDoc:
    """Validate a rule set document (from JSON or YAML); :class:`InvalidRuleSet` says what is wrong."""
    if not isinstance(data, Mapping):
        raise InvalidRuleSet("a rule set must be an object with 'thresholds' and 'rules'")
    unknown = set(data) - {"scene", "thresholds", "rules", "model", "fail_mode"}
    if unknown:
        raise InvalidRuleSet(f"unknown field(s) in the rule set: {', '.join(sorted(map(str, unknown)))}")
    thresholds = _thresholds(data.get("thresholds"))
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise InvalidRuleSet("'rules' must be a non-empty list")
    if len(raw_rules) > MAX_RULES:
        raise InvalidRuleSet(f"a rule set holds at most {MAX_RULES} rules")
    rules: list[Rule] = []
    for index, raw in enumerate(raw_rules):
        rule = _rule(raw, index)
        if any(r.name == rule.name for r in rules):
            raise InvalidRuleSet(f"rule name {rule.name!r} is used twice")
        rules.append(rule)
    fail_mode = data.get("fail_mode")
    if fail_mode is not None and fail_mode not in FAIL_MODES:
        raise InvalidRuleSet("'fail_mode' must be open or closed")
    model = _model(data["model"]) if data.get("model") is not None else None
    return RuleSetDoc(thresholds, tuple(rules), model, fail_mode)


def _model(raw: Any) -> ModelSpec:
    if not isinstance(raw, Mapping) or set(raw) != {"name", "weight", "features"}:
        raise InvalidRuleSet("'model' must be an object with exactly 'name', 'weight' and 'features'")
    name = raw["name"]
    if not isinstance(name, str) or re.fullmatch(NAME_RE, name) is None:
        raise InvalidRuleSet(f"model.name must match {NAME_RE}")
    weight = _number(raw["weight"], "model.weight")
    features = raw["features"]
    if not isinstance(features, list) or not 1 <= len(features) <= MAX_FEATURES:
        raise InvalidRuleSet(f"model.features must be a list of 1 to {MAX_FEATURES} context paths")
    for path in features:
        if not isinstance(path, str) or re.fullmatch(FEATURE_PATH_RE, path) is None:
            raise InvalidRuleSet(f"model feature {path!r} must be a context path such as vel.user.count_1h")
    if len(set(features)) != len(features):
        raise InvalidRuleSet("model.features lists a path twice")
    return ModelSpec(name, weight, tuple(features))


def _number(value: Any, what: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRuleSet(f"{what} must be a number")
    if not minimum <= float(value) <= MAX_WEIGHT:
        raise InvalidRuleSet(f"{what} must be between {minimum:g} and {MAX_WEIGHT:g}")
    return float(value)


def _thresholds(raw: Any) -> Thresholds:
    if not isinstance(raw, Mapping) or not {"challenge", "deny"} <= set(raw) <= {
        "challenge",
        "deny",
        "review",
    }:
        raise InvalidRuleSet(
            "'thresholds' must be an object with exactly 'challenge' and 'deny' (and 'review')"
        )
    challenge = _number(raw["challenge"], "thresholds.challenge", minimum=1e-9)
    deny = _number(raw["deny"], "thresholds.deny", minimum=1e-9)
    if challenge >= deny:
        raise InvalidRuleSet("thresholds.challenge must be lower than thresholds.deny")
    review = None
    if "review" in raw:
        review = _number(raw["review"], "thresholds.review", minimum=1e-9)
        if not challenge < review < deny:
            raise InvalidRuleSet("thresholds.review must lie between challenge and deny")
    return Thresholds(challenge, deny, review)


def _rule(raw: Any, index: int) -> Rule:
    where = f"rule {index + 1}"
    if not isinstance(raw, Mapping):
        raise InvalidRuleSet(f"{where} must be an object with name, expr, weight and message")
    unknown = set(raw) - {"name", "expr", "weight", "message"}
    if unknown:
        raise InvalidRuleSet(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    name = raw.get("name")
    if not isinstance(name, str) or re.fullmatch(NAME_RE, name) is None:
        raise InvalidRuleSet(f"{where}: 'name' must match {NAME_RE}")
    expr = raw.get("expr")
    if not isinstance(expr, str) or not expr.strip() or len(expr) > MAX_EXPR:
        raise InvalidRuleSet(f"rule {name!r}: 'expr' must be a CEL expression of 1 to {MAX_EXPR} characters")
    message = raw.get("message", "")
    if not isinstance(message, str) or len(message) > MAX_MESSAGE:
        raise InvalidRuleSet(f"rule {name!r}: 'message' must be a string of at most {MAX_MESSAGE} characters")
    weight = _number(raw.get("weight"), f"rule {name!r}: 'weight'")
    _compile(name, expr)  # refuse what does not compile, with CEL's own message
    return Rule(name, expr, weight, message)


def _compile(name: str, expr: str) -> Any:
    try:
        program = cel.compile(expr)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidRuleSet(f"rule {name!r} does not compile: {first}") from None
    if MACROS.search(expr) is None:
        unknown = [v for v in program.variables() if v not in ROOTS]
        if unknown:
            raise InvalidRuleSet(
                f"rule {name!r} reads unknown variable(s) {', '.join(unknown)}; "
                f"the context holds {', '.join(ROOTS)}"
            )
    return program


def compile_ruleset(version: str, doc: RuleSetDoc, *, fail_mode: str = "closed") -> CompiledRuleSet:
    """Compile ``doc``; ``fail_mode`` is the scene's default, which the document may override."""
    programs = tuple((rule, _compile(rule.name, rule.expr)) for rule in doc.rules)
    texts = [rule.expr for rule in doc.rules] + list(doc.model.features if doc.model else ())
    return CompiledRuleSet(version, doc, programs, _reads(texts), doc.fail_mode or fail_mode)


def _reads(exprs: list[str]) -> dict[str, frozenset[tuple[str, ...]] | None]:
    """The context paths the rules (and the model's features) read. A root used other than as
    ``root.field`` (indexed, passed whole to a function) is read whole (None)."""
    reads: dict[str, set[tuple[str, ...]] | None] = {}
    for expr in exprs:
        text = _strip_strings(expr)
        for match in PATH.finditer(text):
            root, rest = match.group(1), match.group(2)
            parts = tuple(p for p in rest.split(".") if p)
            depth = 2 if root in ("vel", "lists") else 1
            if len(parts) < depth:
                reads[root] = None
            elif reads.get(root, set()) is not None:
                reads.setdefault(root, set()).add(parts[:depth])  # type: ignore[union-attr]
    return {k: (None if v is None else frozenset(v)) for k, v in reads.items()}


def _strip_strings(expr: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "''", expr)


def prune(context: Mapping[str, Mapping[str, Any]], compiled: CompiledRuleSet) -> dict[str, Any]:
    """The part of ``context`` the rules read: only that is converted for CEL and stored."""
    out: dict[str, Any] = {}
    for root, paths in compiled.reads.items():
        source = context.get(root)
        if source is None:
            continue
        if paths is None:
            out[root] = dict(source)
            continue
        picked: dict[str, Any] = {}
        for path in paths:
            _copy_path(source, picked, path)
        out[root] = picked
    return out


def _copy_path(source: Mapping[str, Any], target: dict[str, Any], path: tuple[str, ...]) -> None:
    head, rest = path[0], path[1:]
    if head not in source:
        return
    value = source[head]
    if not rest:
        target[head] = value
    elif type(value) is dict or isinstance(value, Mapping):  # the ABC check is the slow half
        _copy_path(value, target.setdefault(head, {}), rest)
    else:
        target[head] = value
