"""Scoring in-process: LightGBM text models on our own tree walker, ONNX on onnxruntime,
then the model's calibration. ADR 0013 has the measurements behind the walker.

A row is one value per feature, ``None`` (or NaN) when missing. Booleans count as 1/0;
anything that is not a finite-or-NaN number is missing.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Protocol

from mpaas.banking.risk.modelcentre.errors import InvalidModel
from mpaas.banking.risk.modelcentre.tree_source import Tree, compile_trees

FORMATS = ("lightgbm", "onnx")
#: LightGBM's "is zero" for missing-as-zero splits (kZeroThreshold).
ZERO = 1e-35
NAN = float("nan")


def as_float(value: Any) -> float:
    """A feature value as the models take it: bool → 1/0, number → float, else NaN (missing)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return NAN


def feature_values(context: Mapping[str, Any], paths: Sequence[str]) -> list[float | None]:
    """The values of dotted ``paths`` in a decision context (``None`` where missing)."""
    out: list[float | None] = []
    for path in paths:
        node: Any = context
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        value = as_float(node)
        out.append(None if math.isnan(value) else value)
    return out


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


# -- calibration ------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Maps the model's raw probability to a calibrated one. ``platt``: ``sigmoid(a·logit(p)+b)``;
    ``isotonic``: piecewise-linear through increasing points ``(x, y)``; ``none``: as is."""

    method: str = "none"
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def apply(self, p: float) -> float:
        if math.isnan(p):
            return p
        if self.method == "platt":
            return sigmoid(self.a * logit(p) + self.b)
        if self.method == "isotonic":
            if p <= self.x[0]:
                return self.y[0]
            if p >= self.x[-1]:
                return self.y[-1]
            i = bisect_right(self.x, p) - 1
            x0, x1, y0, y1 = self.x[i], self.x[i + 1], self.y[i], self.y[i + 1]
            return y0 if x1 == x0 else y0 + (y1 - y0) * (p - x0) / (x1 - x0)
        return p

    def to_dict(self) -> dict[str, Any]:
        if self.method == "platt":
            return {"method": "platt", "a": self.a, "b": self.b}
        if self.method == "isotonic":
            return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}
        return {"method": "none"}


def parse_calibration(raw: Any) -> Calibration:
    if raw is None:
        return Calibration()
    if not isinstance(raw, Mapping) or raw.get("method") not in ("none", "platt", "isotonic"):
        raise InvalidModel("calibration must be {method: none | platt | isotonic, ...}")
    method = raw["method"]
    if method == "none":
        _only(raw, {"method"})
        return Calibration()
    if method == "platt":
        _only(raw, {"method", "a", "b"})
        return Calibration("platt", a=_finite(raw.get("a"), "a"), b=_finite(raw.get("b"), "b"))
    _only(raw, {"method", "x", "y"})
    xs, ys = raw.get("x"), raw.get("y")
    if not isinstance(xs, list) or not isinstance(ys, list) or not 2 <= len(xs) == len(ys) <= 1000:
        raise InvalidModel("isotonic calibration needs lists x and y of the same length, 2 to 1000 points")
    x = tuple(_finite(v, "x") for v in xs)
    y = tuple(_finite(v, "y") for v in ys)
    if any(b < a for a, b in pairwise(x)) or any(b < a for a, b in pairwise(y)):
        raise InvalidModel("isotonic calibration points must be non-decreasing in x and y")
    if not all(0.0 <= v <= 1.0 for v in (*x, *y)):
        raise InvalidModel("isotonic calibration points must lie in [0, 1]")
    return Calibration("isotonic", x=x, y=y)


def _only(raw: Mapping[str, Any], keys: set[str]) -> None:
    extra = set(raw) - keys
    if extra:
        raise InvalidModel(f"unknown calibration field(s): {', '.join(sorted(map(str, extra)))}")


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidModel(f"calibration {name} must be a finite number")
    return float(value)


# -- raw predictors ---------------------------------------------------------------------


class Predictor(Protocol):
    n_features: int

    def predict(self, row: Sequence[float]) -> float:
        """The uncalibrated probability for one row (NaN for missing values)."""
        ...


class LightGbmTrees:
    """A binary LightGBM model from its text format, walked in plain Python: one row costs
    a few µs per tree, against ~100 µs of per-call overhead in ``Booster.predict``."""

    def __init__(self, text: str) -> None:
        header, _, rest = text.partition("\nTree=")
        head = _fields(header)
        if not header.startswith("tree") or "max_feature_idx" not in head:
            raise InvalidModel("not a LightGBM text model (no 'tree' header or max_feature_idx)")
        objective = head.get("objective", "")
        if not re.fullmatch(r"binary( sigmoid:[0-9.eE+-]+)?", objective):
            raise InvalidModel(f"only binary LightGBM models are supported (objective {objective!r})")
        match = re.search(r"sigmoid:([0-9.eE+-]+)", objective)
        self.sigmoid = float(match.group(1)) if match else 1.0
        if "average_output" in head:
            raise InvalidModel("random-forest (average_output) LightGBM models are not supported")
        try:
            self.n_features = int(head["max_feature_idx"]) + 1
        except (KeyError, ValueError):
            raise InvalidModel("not a LightGBM text model (no max_feature_idx)") from None
        body = rest.split("\nend of trees", 1)[0]
        self.trees = tuple(
            _tree(_fields(block), self.n_features)
            for block in ("Tree=" + body).split("\nTree=")
            if block.strip()
        )
        if not self.trees:
            raise InvalidModel("the LightGBM model has no trees")
        compiled = compile_trees(self.trees, ZERO)
        #: True when :meth:`raw` runs the trees as generated source (:mod:`.tree_source`)
        self.source_generated = compiled is not None
        self._raw: Callable[[Sequence[float]], float] = compiled or self.walk

    def raw(self, row: Sequence[float]) -> float:
        """The sum of the trees' leaves for ``row``."""
        return self._raw(row)

    def walk(self, row: Sequence[float]) -> float:
        """:meth:`raw` by walking each tree's tuples: the reference for the generated source,
        and what runs where a model is too large or too deep for it."""
        total = 0.0
        for t in self.trees:
            if not t.feature:
                total += t.leaf[0]
                continue
            node = 0
            feature, threshold, missing, default_left = t.feature, t.threshold, t.missing, t.default_left
            left, right = t.left, t.right
            while node >= 0:
                v = row[feature[node]]
                kind = missing[node]
                if v != v:  # NaN
                    if kind == 2:
                        node = left[node] if default_left[node] else right[node]
                        continue
                    v = 0.0
                if kind == 1 and -ZERO <= v <= ZERO:
                    node = left[node] if default_left[node] else right[node]
                elif v <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            total += t.leaf[~node]
        return total

    def predict(self, row: Sequence[float]) -> float:
        return sigmoid(self.sigmoid * self.raw(row))


def _fields(block: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _nums(fields: dict[str, str], key: str, kind: type, count: int) -> tuple[Any, ...]:
    try:
        values = tuple(kind(v) for v in fields.get(key, "").split()) if count else ()
    except ValueError:
        raise InvalidModel(f"LightGBM tree field {key} is not numeric") from None
    if len(values) != count:
        raise InvalidModel(f"LightGBM tree field {key} has {len(values)} values, expected {count}")
    return values


def _tree(fields: dict[str, str], n_features: int) -> Tree:
    try:
        leaves = int(fields["num_leaves"])
    except (KeyError, ValueError):
        raise InvalidModel("a LightGBM tree without num_leaves") from None
    if not 1 <= leaves <= 1 << 16:
        raise InvalidModel("a LightGBM tree has an impossible number of leaves")
    splits = leaves - 1
    if int(fields.get("num_cat", "0")) != 0:
        raise InvalidModel("categorical splits are not supported: encode categories as numbers")
    decision = _nums(fields, "decision_type", int, splits)
    if any(d & 1 for d in decision):
        raise InvalidModel("categorical splits are not supported: encode categories as numbers")
    feature = _nums(fields, "split_feature", int, splits)
    left = _nums(fields, "left_child", int, splits)
    right = _nums(fields, "right_child", int, splits)
    if any(not 0 <= f < n_features for f in feature):
        raise InvalidModel("a LightGBM split names a feature the model does not have")
    for child in (*left, *right):
        if not (0 < child < splits if child >= 0 else ~child < leaves):
            raise InvalidModel("a LightGBM tree has a child index out of range")
    if splits and not _is_tree(left, right, leaves):
        raise InvalidModel("a LightGBM tree must reach each split and each leaf once from its root")
    return Tree(
        feature,
        _nums(fields, "threshold", float, splits),
        tuple((d >> 2) & 3 for d in decision),
        tuple(bool(d & 2) for d in decision),
        left,
        right,
        _nums(fields, "leaf_value", float, leaves),
    )


def _is_tree(left: tuple[int, ...], right: tuple[int, ...], leaves: int) -> bool:
    """Every split and every leaf reached exactly once from split 0: no cycle (the walker
    would never stop) and nothing shared or left out."""
    seen_splits, seen_leaves, stack = {0}, set[int](), [0]
    while stack:
        node = stack.pop()
        for child in (left[node], right[node]):
            seen = seen_splits if child >= 0 else seen_leaves
            key = child if child >= 0 else ~child
            if key in seen:
                return False
            seen.add(key)
            if child >= 0:
                stack.append(child)
    return len(seen_splits) == len(left) and len(seen_leaves) == leaves


class OnnxModel:
    """An ONNX binary classifier on onnxruntime (one thread: the decision path is per request).
    Its input is one float tensor ``[1, n]``; the score is the last float output's positive
    column (``[1, 2]``) or value (``[1]``, ``[1, 1]``)."""

    def __init__(self, artefact: bytes) -> None:
        import numpy as np
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(artefact, options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise InvalidModel(
                f"onnxruntime cannot load the model: {str(exc).splitlines()[0][:200]}"
            ) from None
        inputs = self.session.get_inputs()
        shape = inputs[0].shape if len(inputs) == 1 else None
        if (
            shape is None
            or len(shape) != 2
            or not isinstance(shape[1], int)
            or inputs[0].type != "tensor(float)"
        ):
            raise InvalidModel("the ONNX model must take one float tensor of shape [N, features]")
        self.n_features = int(shape[1])
        self.input = inputs[0].name
        floats = [o for o in self.session.get_outputs() if o.type == "tensor(float)"]
        if not floats:
            raise InvalidModel("the ONNX model has no float tensor output")
        self.output = floats[-1].name
        self._np = np

    def predict(self, row: Sequence[float]) -> float:
        x = self._np.asarray([row], dtype=self._np.float32)
        out = self.session.run([self.output], {self.input: x})[0]
        flat = out.reshape(-1)
        return float(flat[1] if flat.size == 2 else flat[0])


def make_predictor(fmt: str, artefact: bytes) -> Predictor:
    if fmt == "lightgbm":
        try:
            text = artefact.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidModel("a LightGBM model must be its text format (UTF-8)") from None
        return LightGbmTrees(text)
    if fmt == "onnx":
        return OnnxModel(artefact)
    raise InvalidModel(f"format must be one of {', '.join(FORMATS)}")


class LoadedModel:
    """One registered version in memory: :class:`~mpaas.banking.risk.decision.ActiveModel`.
    ``version`` is the version alone (``3``, or ``default-<sha256 prefix>`` for the shipped one)."""

    def __init__(
        self,
        name: str,
        version: str,
        features: tuple[str, ...],
        predictor: Predictor,
        calibration: Calibration,
    ) -> None:
        if predictor.n_features != len(features):
            raise InvalidModel(
                f"the model takes {predictor.n_features} features but {len(features)} are declared"
            )
        self._name, self._version, self._features = name, version, features
        self.predictor, self.calibration = predictor, calibration

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    @property
    def features(self) -> tuple[str, ...]:
        return self._features

    def raw(self, values: Sequence[Any]) -> float:
        """The uncalibrated probability (what the library's own predict answers)."""
        if len(values) != len(self._features):
            raise ValueError(f"{self._name} takes {len(self._features)} values, got {len(values)}")
        return self.predictor.predict([NAN if v is None else as_float(v) for v in values])

    def score(self, values: Sequence[float | None]) -> float:
        return self.calibration.apply(self.raw(values))
