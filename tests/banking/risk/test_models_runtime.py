"""The model centre's runtime without a database: our LightGBM tree walker and the ONNX path
answer what LightGBM's own predict answers, calibrations parse and apply, bad artefacts are
refused, and the synthetic generator is deterministic per seed."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.banking.risk.modelcentre.errors import InvalidModel
from mpaas.banking.risk.modelcentre.registry import shipped, shipped_onnx
from mpaas.banking.risk.modelcentre.replay import Featurizer
from mpaas.banking.risk.modelcentre.runtime import (
    LightGbmTrees,
    LoadedModel,
    OnnxModel,
    make_predictor,
    parse_calibration,
)
from mpaas.banking.risk.modelcentre.synthetic import ATTACKS, transfers

lgb = pytest.importorskip("lightgbm")


def sample_rows(features: tuple[str, ...], n: int = 200) -> list[list[float]]:
    """Rows as the engine would see them (synthetic transfers), some values knocked out."""
    rng = random.Random(5)
    feats = Featurizer()
    rows = []
    for t in transfers(31, 600)[:n]:
        ctx = t.context()
        full = feats.context(ctx, t.at)
        feats.commit(ctx, t.at)
        row = []
        for path in features:
            node: Any = full
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            value = float(node) if isinstance(node, int | float) else math.nan
            row.append(math.nan if rng.random() < 0.1 else value)
        rows.append(row)
    return rows


def test_the_tree_walker_answers_what_lightgbm_answers_for_the_shipped_model() -> None:
    package = shipped()
    text = package.artefact.decode()
    rows = sample_rows(tuple(package.meta["features"]))
    expected = lgb.Booster(model_str=text).predict(np.array(rows))
    walker = LightGbmTrees(text)
    assert [walker.predict(r) for r in rows] == pytest.approx(list(expected), abs=1e-12)
    assert len({round(float(p), 6) for p in expected}) > 10  # the rows exercise many leaves


def test_missing_as_zero_and_nan_splits_follow_lightgbm() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 3))
    x[rng.random(size=x.shape) < 0.2] = np.nan
    x[rng.random(size=x.shape) < 0.1] = 0.0
    y = ((np.nan_to_num(x[:, 0]) + (x[:, 1] == 0)) > 0.3).astype(int)
    for zero_as_missing in (False, True):
        params = {
            "objective": "binary",
            "num_leaves": 7,
            "min_data_in_leaf": 5,
            "verbose": -1,
            "num_threads": 1,
        }
        booster = lgb.train(params | {"zero_as_missing": zero_as_missing}, lgb.Dataset(x, y), 8)
        walker = LightGbmTrees(booster.model_to_string())
        probe = x[:100]
        expected = booster.predict(probe)
        assert [walker.predict(list(r)) for r in probe] == pytest.approx(list(expected), abs=1e-12)


def test_the_onnx_path_answers_what_lightgbm_answers() -> None:
    package = shipped()
    rows = sample_rows(tuple(package.meta["features"]))
    expected = lgb.Booster(model_str=package.artefact.decode()).predict(np.array(rows))
    onnx = OnnxModel(shipped_onnx())
    assert onnx.n_features == len(package.meta["features"])
    assert [onnx.predict(r) for r in rows] == pytest.approx(list(expected), abs=1e-5)  # float32


def test_calibration_and_feature_count_apply_to_a_loaded_model() -> None:
    package = shipped()
    walker = LightGbmTrees(package.artefact.decode())
    features = tuple(package.meta["features"])
    platt = LoadedModel(
        "m", "1", features, walker, parse_calibration({"method": "platt", "a": 1.0, "b": 0.0})
    )
    row: list[float | None] = [None] * len(features)
    assert platt.score(row) == pytest.approx(platt.raw(row))  # a=1, b=0 is the identity
    iso = parse_calibration({"method": "isotonic", "x": [0.0, 0.5, 1.0], "y": [0.0, 0.9, 1.0]})
    assert iso.apply(0.25) == pytest.approx(0.45) and iso.apply(2.0) == 1.0
    with pytest.raises(InvalidModel, match="takes 15 features but 2 are declared"):
        LoadedModel("m", "1", ("txn.amount", "txn.external"), walker, parse_calibration(None))


@pytest.mark.parametrize(
    ("fmt", "artefact", "message"),
    [
        ("lightgbm", b"hello", "not a LightGBM text model"),
        ("lightgbm", b"\xff\xfe", "text format"),
        ("lightgbm", b"tree\nversion=v4\nobjective=regression\nmax_feature_idx=1\n", "only binary"),
        ("onnx", b"not onnx at all", "onnxruntime cannot load"),
        ("pickle", b"x", "format must be one of"),
    ],
)
def test_an_artefact_that_does_not_load_is_refused(fmt: str, artefact: bytes, message: str) -> None:
    with pytest.raises(InvalidModel, match=message):
        make_predictor(fmt, artefact)


@settings(max_examples=60, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=8),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(st.sampled_from(["method", "a", "b", "x", "y"]), c, max_size=5)
        ),
        max_leaves=8,
    )
)
def test_a_calibration_parses_or_is_refused_cleanly(raw: Any) -> None:
    try:
        calibration = parse_calibration(raw)
    except InvalidModel:
        return
    value = calibration.apply(0.3)
    assert 0.0 <= value <= 1.0


def test_the_generator_is_deterministic_per_seed_and_labels_every_attack() -> None:
    first, again, other = transfers(3, 4000), transfers(3, 4000), transfers(4, 4000)
    assert first == again
    assert first != other
    assert len(first) == 4000
    assert [t.at for t in first] == sorted(t.at for t in first)
    assert {t.label for t in first} == {"honest", *ATTACKS}
    assert all(t.episode for t in first if t.label != "honest")


def one_tree_model(left: list[int], right: list[int], thresholds: list[float], leaves: list[float]) -> str:
    """A LightGBM text model of one tree over one feature (decision type 0: NaN counts as 0)."""
    splits = len(left)
    return "\n".join(
        [
            "tree",
            "version=v4",
            "max_feature_idx=0",
            "objective=binary sigmoid:1",
            "",
            "Tree=0",
            f"num_leaves={len(leaves)}",
            "num_cat=0",
            "split_feature=" + " ".join(["0"] * splits),
            "threshold=" + " ".join(map(repr, thresholds)),
            "decision_type=" + " ".join(["0"] * splits),
            "left_child=" + " ".join(map(str, left)),
            "right_child=" + " ".join(map(str, right)),
            "leaf_value=" + " ".join(map(repr, leaves)),
            "",
            "end of trees",
        ]
    )


def chain(n_leaves: int) -> str:
    """Split i sends x <= i to leaf i and the rest on to split i + 1: as deep as it is long."""
    splits = n_leaves - 1
    right = [i + 1 for i in range(splits - 1)] + [~splits]
    return one_tree_model(
        [~i for i in range(splits)],
        right,
        [float(i) for i in range(splits)],
        [i / 100 for i in range(n_leaves)],
    )


@pytest.mark.parametrize("n_leaves", [40, 150, 5000])  # deeper than Python source may nest: the walker
def test_a_deep_tree_scores_like_its_definition(n_leaves: int) -> None:
    model = LightGbmTrees(chain(n_leaves))
    assert model.source_generated == (n_leaves == 40)
    for x in [-5.0, 0.0, 0.5, 3.0, 37.2, 88.0, 140.5, 4999.0, 1e9, math.nan]:
        expected = min(math.ceil(max(0.0 if math.isnan(x) else x, 0.0)), n_leaves - 1) / 100
        assert model.raw([x]) == pytest.approx(expected), x


def test_a_tree_with_a_cycle_or_a_shared_node_is_refused() -> None:
    """Regression: child indices were only range-checked, so a split could lead back to an
    earlier one and the walker would never stop on a row that reached it."""
    cycle = one_tree_model([1, 2, 1], [-1, -2, -3], [0.0, 1.0, 2.0], [0.1, 0.2, 0.3, 0.4])
    shared = one_tree_model([1, -1], [-1, -2], [0.0, 1.0], [0.1, 0.2, 0.3])
    for text in (cycle, shared):
        with pytest.raises(InvalidModel, match="each split and each leaf once"):
            LightGbmTrees(text)


SPECIAL = st.sampled_from([math.nan, 0.0, -0.0, 1e-40, -1e-40, math.inf, -math.inf])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True) | SPECIAL, min_size=15, max_size=15))
def test_the_generated_trees_answer_what_the_walker_answers(row: list[float]) -> None:
    """The shipped model's trees as generated Python give the walker's sum, to the bit, for
    any row: NaN, zeros, values within LightGBM's zero threshold, infinities."""
    model = SHIPPED_TREES
    assert model.source_generated
    walked = model.walk(row)
    assert model.raw(row) == walked or (math.isnan(walked) and math.isnan(model.raw(row)))


SHIPPED_TREES = LightGbmTrees(shipped().artefact.decode())
