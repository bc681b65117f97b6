"""Columns of a page of recorded inputs, for the columnar CEL evaluator (``cel_vector``).

A column holds one context path (``vel.user.count_1h``) over every row of the page, built
only for the paths the draft reads: one generated pass reads them all (``cel_extract``),
and the values are typed in bulk (numpy does the conversions).

What a walk meets, as the ``cel`` package sees it: a missing key is a lookup error; an
undefined root (or ``_engine``, which compose() hides), or a field of a non-map, is an
error; a list on the way, a list or map as the value, or an int outside int64 is *odd*:
the caller evaluates those rows row-wise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np

from mpaas.banking.risk.cel_extract import Key, extractor
from mpaas.banking.risk.cel_parse import INT_MAX, INT_MIN
from mpaas.banking.risk.cel_vector import BOOL, DOUBLE, ERROR, INT, LOOKUP, NULL, STR, Vec

ODD = 7


class _Absent:
    pass


class _Failed:
    pass


class _Odd:
    pass


ABSENT, FAILED, ODD_VALUE = _Absent(), _Failed(), _Odd()
_SENTINELS = (_Absent, _Failed, _Odd)
_TAGS: dict[type, int] = {
    type(None): NULL,
    bool: BOOL,
    int: INT,
    float: DOUBLE,
    str: STR,
    _Absent: LOOKUP,
    _Failed: ERROR,
}


def _step(value: Any) -> Any:
    """What selecting a field of a non-map gives: the same failure, odd (a list), or an error."""
    kind = type(value)
    if kind in _SENTINELS:
        return value
    return ODD_VALUE if kind is list else FAILED


class Columns:
    """The columns of one page, built on first use (all the draft's at once with
    :meth:`fetch`) and kept for the page's other rules."""

    def __init__(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self.rows = rows
        self.n = len(rows)
        self.vecs: dict[Key, Vec] = {}
        self.odd: dict[Key, np.ndarray] = {}

    def fetch(self, keys: Iterable[Key]) -> None:
        missing = tuple(sorted(set(keys) - self.vecs.keys()))
        if missing:
            names = {"ABSENT": ABSENT, "FAILED": FAILED, "_step": _step}
            for key, values in zip(missing, extractor(missing, names)(self.rows), strict=True):
                self.vecs[key], self.odd[key] = typed(values)

    def get(self, key: Key) -> Vec:
        self.fetch((key,))
        return self.vecs[key]


def typed(values: list[Any]) -> tuple[Vec, np.ndarray]:
    """``values`` as a :class:`Vec`, and the mask of the odd rows (their tag reads ERROR)."""
    n = len(values)
    kinds = set(map(type, values))
    if len(kinds) == 1 and _TAGS.get(next(iter(kinds)), ODD) in _UNIFORM:
        uniform = _uniform(values, _TAGS[kinds.pop()])
        if uniform is not None:
            return uniform, np.zeros(n, bool)
    tags = np.fromiter(map(_TAGS.get, map(type, values), repeat(ODD, n)), dtype=np.int8, count=n)
    vec = Vec(tags, np.zeros(n, np.int64), np.zeros(n, np.float64))
    objects = np.fromiter(values, dtype=object, count=n)
    ints = tags == INT
    if ints.any():
        try:
            vec.i[ints] = objects[ints].astype(np.int64)
        except OverflowError:  # CEL reads these as uint or double: row-wise
            for k in np.flatnonzero(ints):
                value = values[k]
                if INT_MIN <= value <= INT_MAX:
                    vec.i[k] = value
                else:
                    tags[k] = ODD
    bools = tags == BOOL
    if bools.any():
        vec.i[bools] = objects[bools].astype(np.int64)
    doubles = tags == DOUBLE
    if doubles.any():
        vec.f[doubles] = objects[doubles].astype(np.float64)
    if (tags == STR).any():
        vec.s = objects
    odd = tags == ODD
    tags[odd] = ERROR
    return vec, odd


_UNIFORM = (LOOKUP, ERROR, NULL, BOOL, INT, DOUBLE)


def _uniform(values: list[Any], tag: int) -> Vec | None:
    """A column whose rows all hold one type (the usual case), without per-row masks; None
    when an int does not fit int64 (the general path marks those rows odd)."""
    n = len(values)
    vec = Vec(np.full(n, tag, np.int8), np.zeros(n, np.int64), np.zeros(n, np.float64), only=tag)
    if tag in (INT, BOOL):
        try:
            vec.i = np.array(values, dtype=np.int64)
        except OverflowError:
            return None
    elif tag == DOUBLE:
        vec.f = np.array(values, dtype=np.float64)
    return vec
