"""Columnar evaluation of parsed CEL rules (``cel_parse``) over many recorded inputs at once.

Each value is a :class:`Vec`: a type tag per row plus int64, float64 and object payloads.
The semantics follow the ``cel`` package the engine runs (common-expression-language, probed
and checked by tests/banking/risk/test_cel_vector.py), not an idealised CEL:

- a missing key is a *lookup* error (the rule is ``not_evaluated``); an undefined root, a
  field of a non-map, a type mismatch, an int overflow or a division by zero is an *error*
  (``not_evaluated`` and listed in ``errors``);
- int and double compare after casting the int to double; ``==`` across other types is
  false; int and double never mix in arithmetic; ints wrap on unary minus only, and ``-``
  of a bool is ``!``;
- ``&&`` and ``||`` absorb errors both ways; when both sides fail, the right one is reported;
- ``size`` of a string counts UTF-8 bytes.

Values outside the model (uint-range ints, lists and maps as values) mark their rows *odd*
(``cel_columns``): the caller evaluates those rows row-wise with the compiled program.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpaas.banking.risk.cel_parse import INT_MIN, Binary, Call, Cond, Const, Has, InList, Node, Path, Unary

LOOKUP, ERROR, NULL, BOOL, INT, DOUBLE, STR = range(7)
TAGS: dict[type, int] = {type(None): NULL, bool: BOOL, int: INT, float: DOUBLE, str: STR}


NUMERIC = np.zeros(8, bool)
NUMERIC[[INT, DOUBLE]] = True
MIXED = -1


@dataclass
class Vec:
    """Values of one expression over a page. Never changed once made: memos share them."""

    tag: np.ndarray
    i: np.ndarray
    f: np.ndarray
    s: np.ndarray | None = None
    #: The one tag of every row, MIXED, or None (not computed yet).
    only: int | None = None

    @classmethod
    def empty(cls, n: int, tag: int = ERROR) -> Vec:
        return cls(np.full(n, tag, np.int8), np.zeros(n, np.int64), np.zeros(n, np.float64))

    def kind(self) -> int:
        """The tag all rows share, or MIXED: homogeneous columns take the fast paths."""
        if self.only is None:
            lo = int(self.tag.min()) if len(self.tag) else MIXED
            self.only = lo if len(self.tag) and lo == int(self.tag.max()) else MIXED
        return self.only

    def strings(self) -> np.ndarray:
        if self.s is None:
            self.s = np.full(len(self.tag), "", dtype=object)
        return self.s


def const(value: Any, n: int) -> Vec:
    vec = Vec.empty(n, TAGS[type(value)])
    vec.only = TAGS[type(value)]
    if isinstance(value, int):  # bool too
        vec.i[:] = value
    elif isinstance(value, float):
        vec.f[:] = value
    elif isinstance(value, str):
        vec.strings()[:] = value
    return vec


def _errors_first(out: Vec, *args: Vec) -> Vec:
    """Strict operators report the first failing operand (left to right)."""
    for arg in reversed(args):
        bad = arg.tag <= ERROR
        out.tag[bad] = arg.tag[bad]
    return out


def _both(a: Vec, b: Vec, ta: int, tb: int) -> np.ndarray:
    return (a.tag == ta) & (b.tag == tb)


def _as_float(v: Vec) -> np.ndarray:
    return np.where(v.tag == INT, v.i.astype(np.float64), v.f)


def _set_bool(out: Vec, mask: np.ndarray, values: np.ndarray) -> None:
    out.tag[mask] = BOOL
    out.i[mask] = values[mask] if values.shape == mask.shape else values


def _str_cmp(op: str, a: Vec, b: Vec, mask: np.ndarray) -> np.ndarray:
    result = np.zeros(len(mask), bool)
    if mask.any():
        x, y = a.strings()[mask], b.strings()[mask]
        result[mask] = [_PY_CMP[op](p, q) for p, q in zip(x, y, strict=True)]
    return result


_PY_CMP = {
    "<": lambda p, q: p < q,
    "<=": lambda p, q: p <= q,
    ">": lambda p, q: p > q,
    ">=": lambda p, q: p >= q,
    "==": lambda p, q: p == q,
}
_NP_CMP = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal}


_ZEROS: dict[int, np.ndarray] = {}


def _bools(values: np.ndarray) -> Vec:
    n = len(values)
    if n not in _ZEROS:  # a shared, read-only payload for the unused doubles
        _ZEROS.clear()
        _ZEROS[n] = np.zeros(n, np.float64)
        _ZEROS[n].flags.writeable = False
    return Vec(np.full(n, BOOL, np.int8), values.astype(np.int64), _ZEROS[n], only=BOOL)


def equals(a: Vec, b: Vec) -> Vec:
    n = len(a.tag)
    if a.kind() == b.kind() and a.kind() in (INT, BOOL):
        return _bools(a.i == b.i)
    out = Vec.empty(n, BOOL)
    numeric = NUMERIC[a.tag] & NUMERIC[b.tag]
    ints = _both(a, b, INT, INT)
    same = (a.tag == b.tag) & ~numeric
    eq = np.zeros(n, bool)
    with np.errstate(invalid="ignore"):
        eq |= numeric & ~ints & (_as_float(a) == _as_float(b))
    eq |= ints & (a.i == b.i)
    eq |= same & (a.tag == BOOL) & (a.i == b.i)
    eq |= same & (a.tag == NULL)
    eq |= _str_cmp("==", a, b, same & (a.tag == STR))
    out.i[:] = eq
    return _errors_first(out, a, b)


def order(op: str, a: Vec, b: Vec) -> Vec:
    n = len(a.tag)
    cmp = _NP_CMP[op]
    ka, kb = a.kind(), b.kind()
    if ka == kb and ka in (INT, BOOL):
        return _bools(cmp(a.i, b.i))
    if ka in (INT, DOUBLE) and kb in (INT, DOUBLE):
        fa, fb = (
            (a.i.astype(np.float64) if ka == INT else a.f),
            (b.i.astype(np.float64) if kb == INT else b.f),
        )
        if not (np.isnan(fa).any() or np.isnan(fb).any()):
            return _bools(cmp(fa, fb))
    out = Vec.empty(n)
    ints = _both(a, b, INT, INT) | _both(a, b, BOOL, BOOL)
    _set_bool(out, ints, cmp(a.i, b.i))
    numeric = NUMERIC[a.tag] & NUMERIC[b.tag] & ~ints
    fa, fb = _as_float(a), _as_float(b)
    numeric &= ~(np.isnan(fa) | np.isnan(fb))  # NaN does not order: an error
    with np.errstate(invalid="ignore"):
        _set_bool(out, numeric, cmp(fa, fb))
    strings = _both(a, b, STR, STR)
    _set_bool(out, strings, _str_cmp(op, a, b, strings))
    return _errors_first(out, a, b)


def arithmetic(op: str, a: Vec, b: Vec) -> Vec:
    n = len(a.tag)
    out = Vec.empty(n)
    ints = _both(a, b, INT, INT)
    if ints.any():
        value, bad = _int_op(op, a.i, b.i)
        ok = ints & ~bad
        out.tag[ok] = INT
        out.i[ok] = value[ok]
    doubles = _both(a, b, DOUBLE, DOUBLE)
    if op != "%" and doubles.any():
        with np.errstate(all="ignore"):
            value_f = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}[op](a.f, b.f)
        out.tag[doubles] = DOUBLE
        out.f[doubles] = value_f[doubles]
    strings = _both(a, b, STR, STR)
    if op == "+" and strings.any():
        out.tag[strings] = STR
        out.strings()[strings] = a.strings()[strings] + b.strings()[strings]
    return _errors_first(out, a, b)


def _int_op(op: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The int64 result and the rows where CEL raises (overflow, division by zero)."""
    with np.errstate(all="ignore"):
        if op == "+":
            r = x + y
            return r, ((x ^ r) & (y ^ r)) < 0
        if op == "-":
            r = x - y
            return r, ((x ^ y) & (x ^ r)) < 0
        if op == "*":
            r = x * y
            bad = np.abs(x.astype(np.float64) * y.astype(np.float64)) >= 2.0**62
            for k in np.flatnonzero(bad):  # close to the edge: decide exactly
                exact = int(x[k]) * int(y[k])
                bad[k] = not INT_MIN <= exact <= -INT_MIN - 1
            return r, bad
        bad = (y == 0) | ((x == INT_MIN) & (y == -1))
        safe = np.where(bad, 1, y)
        rem = np.fmod(x, safe)  # the sign of the dividend, as Rust's %
        if op == "%":
            return rem, bad
        return (x - rem) // safe, bad


def negate(a: Vec) -> Vec:
    out = Vec.empty(len(a.tag))
    ints, doubles = a.tag == INT, a.tag == DOUBLE
    out.tag[ints] = INT
    with np.errstate(all="ignore"):
        out.i[ints] = np.negative(a.i)[ints]  # wraps: -INT_MIN is INT_MIN
    out.tag[doubles] = DOUBLE
    out.f[doubles] = -a.f[doubles]
    _set_bool(out, a.tag == BOOL, a.i == 0)  # the package negates a bool as ``!`` does
    return _errors_first(out, a)


def logical_not(a: Vec) -> Vec:
    out = Vec.empty(len(a.tag))
    _set_bool(out, a.tag == BOOL, a.i == 0)
    return _errors_first(out, a)


def logic(op: str, a: Vec, b: Vec) -> Vec:
    """``&&`` (``op`` = "&&") and ``||``, as the ``cel`` package absorbs errors."""
    n = len(a.tag)
    if a.kind() == BOOL and b.kind() == BOOL:
        return _bools(a.i & b.i if op == "&&" else a.i | b.i)
    decisive = 0 if op == "&&" else 1  # false decides &&, true decides ||
    out = Vec.empty(n, BOOL)
    out.i[:] = 1 - decisive
    a_dec = (a.tag == BOOL) & (a.i == decisive)
    b_dec = (b.tag == BOOL) & (b.i == decisive)
    b_other = (b.tag == BOOL) & ~b_dec
    a_other = (a.tag == BOOL) & ~a_dec
    # b fails: its error; b is the other bool: a's error if a failed, an error if a is no bool
    b_err = b.tag <= ERROR
    out.tag[b_err] = b.tag[b_err]
    a_err = a.tag <= ERROR
    bad_b = ~b_err & (b.tag != BOOL)
    out.tag[bad_b] = np.where(a_err, a.tag, ERROR)[bad_b]
    tail = b_other & ~a_other
    out.tag[tail] = np.where(a_err, a.tag, ERROR)[tail]
    decided = a_dec | b_dec
    out.tag[decided] = BOOL
    out.i[decided] = decisive
    return out


def cond(t: Vec, x: Vec, y: Vec) -> Vec:
    pick = (t.tag == BOOL) & (t.i == 1)
    out = Vec(
        np.where(pick, x.tag, y.tag).astype(np.int8),
        np.where(pick, x.i, y.i),
        np.where(pick, x.f, y.f),
    )
    if x.s is not None or y.s is not None:
        out.s = np.where(pick, x.strings(), y.strings())
    out.tag[t.tag != BOOL] = ERROR
    return _errors_first(out, t)


def in_list(x: Vec, items: list[Vec]) -> Vec:
    out = Vec.empty(len(x.tag), BOOL)
    for item in items:
        out.i |= equals(x, item).i
    for item in reversed(items):
        bad = item.tag <= ERROR
        out.tag[bad] = item.tag[bad]
    return _errors_first(out, x)


def call(name: str, target: Vec, args: list[Vec]) -> Vec:
    n = len(target.tag)
    out = Vec.empty(n)
    if name == "size":
        ok = target.tag == STR
        out.tag[ok] = INT
        out.i[ok] = [len(s.encode()) for s in target.strings()[ok]]
        return _errors_first(out, target)
    arg = args[0]
    ok = _both(target, arg, STR, STR)
    if ok.any():
        method = {"startsWith": str.startswith, "endsWith": str.endswith, "contains": str.__contains__}[name]
        pairs = zip(target.strings()[ok], arg.strings()[ok], strict=True)
        _set_bool(out, ok, np.array([method(p, q) for p, q in pairs], bool))
    return _errors_first(out, arg, target)  # the package evaluates the argument first


def evaluate(
    node: Node,
    columns: Mapping[tuple[tuple[str, ...], bool], Vec],
    n: int,
    memo: dict[Node, Vec] | None = None,
) -> Vec:
    """``node`` over ``n`` rows; ``columns`` maps (path, is_has) to its column. ``memo`` keeps
    each subexpression's value for the page (generated rules repeat their conditions)."""
    memo = {} if memo is None else memo
    if node not in memo:
        memo[node] = _evaluate(node, columns, n, memo)
    return memo[node]


def _evaluate(
    node: Node, columns: Mapping[tuple[tuple[str, ...], bool], Vec], n: int, memo: dict[Node, Vec]
) -> Vec:
    def ev(x: Node) -> Vec:
        return evaluate(x, columns, n, memo)

    if isinstance(node, Const):
        return const(node.value, n)
    if isinstance(node, Path):
        return columns[(node.parts, False)]
    if isinstance(node, Has):
        return columns[(node.parts, True)]
    if isinstance(node, Unary):
        return negate(ev(node.arg)) if node.op == "-" else logical_not(ev(node.arg))
    if isinstance(node, Binary):
        a, b = ev(node.left), ev(node.right)
        if node.op in ("&&", "||"):
            return logic(node.op, a, b)
        if node.op in ("==", "!="):
            eq = equals(a, b)
            return eq if node.op == "==" else Vec(eq.tag, 1 - eq.i, eq.f, only=eq.only)
        if node.op in _NP_CMP:
            return order(node.op, a, b)
        return arithmetic(node.op, a, b)
    if isinstance(node, InList):
        return in_list(ev(node.arg), [ev(i) for i in node.items])
    if isinstance(node, Cond):
        return cond(ev(node.test), ev(node.then), ev(node.other))
    assert isinstance(node, Call)
    return call(node.name, ev(node.target), [ev(a) for a in node.args])
