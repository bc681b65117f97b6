"""LightGBM trees as one generated Python function, as the rules are (ADR 0018).

The walker in :mod:`.runtime` reads each split's feature, threshold, missing rule and
children from tuples at every step; the shipped model (80 trees of 15 leaves) cost about
30 µs a row that way, on every transfer the model scores. Here each tree becomes nested
``if``/``else`` on literals, its splits in the walker's order of tests, and the sum of all
trees one function: the same answers (tests compare both with LightGBM itself), in about a
third of the time (9 µs against 29). Compiling costs about 22 µs of CPU per split (24 ms
for the shipped model, once per model version and process, in the loader's thread), in
parts of 128 splits that each hold the GIL for about 3 ms; a model of more than
:data:`MAX_SPLITS` splits, or with a tree deeper than :data:`MAX_DEPTH` (Python refuses
source nested past 100 levels), keeps the walker.

Only numbers parsed by :mod:`.runtime` reach the source (feature indices as ``int``,
thresholds and leaf values as ``float``, written with ``repr`` or as named constants when
they are not finite), so a model file cannot inject code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: Nested ``if`` levels a generated tree may use (Python's limit is 100 indentation levels).
MAX_DEPTH = 60
#: Splits in all trees that the source may hold (compiling costs about 22 µs of CPU a split).
MAX_SPLITS = 4096
#: Splits per compiled part: about 3 ms of compiling with the GIL held.
PART_SPLITS = 128


@dataclass(frozen=True)
class Tree:
    """One LightGBM tree as :mod:`.runtime` parses it: split ``i`` tests ``feature[i]``
    against ``threshold[i]``; a child ``>= 0`` is a split, ``~leaf`` a leaf."""

    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    #: per split: 0 no missing handling, 1 missing-as-zero, 2 NaN; and whether missing goes left
    missing: tuple[int, ...]
    default_left: tuple[bool, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    leaf: tuple[float, ...]


def _num(x: float) -> str:
    if math.isnan(x):
        return "NAN"
    if math.isinf(x):
        return "INF" if x > 0 else "(-INF)"
    return repr(float(x))


def _depth(tree: Tree) -> int:
    """Splits on the longest path from the root (iterative: a chain may be 65,535 deep)."""
    deepest, stack = 0, [(0, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack += [(child, depth + 1) for child in (tree.left[node], tree.right[node]) if child >= 0]
    return deepest


def _split(tree: Tree, node: int, zero: float) -> str:
    """The condition that sends a row left at ``node``, with the walker's missing rules:
    NaN goes the default way (rule 2), or counts as 0.0 (rules 0 and 1); under rule 1 a
    value within ``zero`` of 0 goes the default way too."""
    f, t = tree.feature[node], _num(tree.threshold[node])
    kind, default = tree.missing[node], tree.default_left[node]
    if kind == 2:  # NaN: the default way; otherwise compare (NaN <= t is False: right)
        return f"(v := row[{f}]) <= {t} or v != v" if default else f"row[{f}] <= {t}"
    if kind == 1:
        return f"{default} if ((v := row[{f}]) != v or {-zero!r} <= v <= {zero!r}) else v <= {t}"
    # rule 0: NaN counts as 0.0
    zero_left = tree.threshold[node] >= 0.0  # 0.0 <= t (False for a NaN threshold)
    return f"(v := row[{f}]) <= {t} or v != v" if zero_left else f"row[{f}] <= {t}"


def _emit(tree: Tree, node: int, indent: int, zero: float, out: list[str]) -> None:
    pad = "    " * indent
    if node < 0:
        out.append(f"{pad}total += {_num(tree.leaf[~node])}")
        return
    out.append(f"{pad}if {_split(tree, node, zero)}:")
    _emit(tree, tree.left[node], indent + 1, zero, out)
    out.append(f"{pad}else:")
    _emit(tree, tree.right[node], indent + 1, zero, out)


def compile_trees(trees: Sequence[Tree], zero: float) -> Callable[[Sequence[float]], float] | None:
    """``raw(row)``: the sum of the trees' leaves for ``row``; None when the trees are too
    large or too deep for source. The trees are compiled in parts of about
    :data:`PART_SPLITS` splits, one ``compile()`` each, so that a model loaded in a thread
    holds the GIL (and stalls the serving loop) for a few milliseconds at a time, not for the
    whole model."""
    if sum(len(tree.feature) for tree in trees) > MAX_SPLITS:
        return None
    if any(tree.feature and _depth(tree) > MAX_DEPTH for tree in trees):
        return None
    parts: list[Callable[[Sequence[float], float], float]] = []
    out: list[str] = []
    splits = 0
    for i, tree in enumerate(trees):
        if not tree.feature:
            out.append(f"    total += {_num(tree.leaf[0])}")
        else:
            _emit(tree, 0, 1, zero, out)
        splits += len(tree.feature)
        if splits >= PART_SPLITS or i == len(trees) - 1:
            parts.append(_function(out))
            out, splits = [], 0
    whole = tuple(parts)

    def raw(row: Sequence[float]) -> float:
        total = 0.0
        for part in whole:  # each part adds on to the total: the walker's order of additions
            total = part(row, total)
        return total

    return raw


def _function(body: list[str]) -> Callable[[Sequence[float], float], float]:
    source = "\n".join(["def part(row, total):", *body, "    return total"])
    namespace: dict[str, object] = {"NAN": math.nan, "INF": math.inf}
    exec(compile(source, "<lightgbm trees>", "exec"), namespace)  # noqa: S102 - numbers only
    part = namespace["part"]
    assert callable(part)
    return part
