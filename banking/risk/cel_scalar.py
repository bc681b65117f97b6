"""Scalar evaluation of a rule set's CEL rules over one decision's context, without ``cel``.

The ``cel`` package costs about 1–3 µs a rule plus 2–5 µs a value to convert the context,
some 40 % of ``decide()``. Here the rules the parser translates (``cel_parse``) become one
straight-line Python function per rule set, generated and compiled once: each context path
is read once for all rules, and a subexpression the rules share is computed once. The
semantics are the ``cel`` package's, as :mod:`mpaas.banking.risk.cel_vector` pins them down
(lookup vs error, int/double comparison through double, int overflow, division by zero,
``&&``/``||`` absorbing errors, ``-`` of a bool, ``size`` in UTF-8 bytes, null). A value is
a Python ``None``/bool/int/float/str or a failure, :data:`LOOKUP` or :data:`ERROR`, carried
as a value, so every subexpression is evaluated (no short-circuit) with the same result.
A rule the parser does not translate, or one that reads a value outside this model (an int
outside int64, a list, a map, bytes, a string Rust cannot hold, any other type), answers
:data:`FALLBACK`: the caller runs its ``cel`` program for that decision.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mpaas.banking.risk import cel_parse as cp
from mpaas.banking.risk.cel_extract import Key, PathTrie, path_trie
from mpaas.banking.risk.cel_parse import INT_MAX, INT_MIN, Node


class _Fail:
    """An evaluation failure carried as a value: CEL's ``&&`` and ``||`` may absorb it."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return self.kind


LOOKUP, ERROR = _Fail("LOOKUP"), _Fail("ERROR")
#: A value outside the model, in place of the value itself: no helper recognises it.
ODD = object()
#: What a rule answers when its ``cel`` program must run instead.
FALLBACK = _Fail("FALLBACK")
NUM = (int, float)
PLAIN = frozenset({bool, float, type(None), _Fail})


def _odd(value: Any) -> bool:
    """Whether a value the walk met (not an int: the caller checks those) is outside the model."""
    if type(value) is str:
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate: the cel package cannot convert it
            return True
        return False
    return True


def _step(value: Any) -> Any:
    """A field of a non-map: the same failure, an error, or odd (a list, an unknown type)."""
    kind = type(value)
    if kind is _Fail or value is ODD:
        return value
    if kind in PLAIN or (kind is int and INT_MIN <= value <= INT_MAX) or (kind is str and not _odd(value)):
        return ERROR
    return ODD


def _eq(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is _Fail or tb is _Fail:
        return a if ta is _Fail else b
    if ta is tb:
        return a == b
    if ta in NUM and tb in NUM:
        return float(a) == float(b)
    return False


def _ne(a: Any, b: Any) -> Any:
    eq = _eq(a, b)
    return eq if type(eq) is _Fail else not eq


def _order(cmp: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    def order(a: Any, b: Any) -> Any:
        ta, tb = type(a), type(b)
        if ta is _Fail or tb is _Fail:
            return a if ta is _Fail else b
        if ta is tb and ta in (int, bool, str):
            return cmp(a, b)
        if ta in NUM and tb in NUM:
            x, y = float(a), float(b)
            return ERROR if x != x or y != y else cmp(x, y)  # NaN does not order
        return ERROR

    return order


def _arith(
    ints: Callable[[int, int], Any], doubles: Callable[[float, float], float] | None, strings: bool = False
) -> Any:
    def arith(a: Any, b: Any) -> Any:
        ta, tb = type(a), type(b)
        if ta is _Fail or tb is _Fail:
            return a if ta is _Fail else b
        if ta is not tb:
            return ERROR
        if ta is int:
            r = ints(a, b)
            return r if type(r) is int and INT_MIN <= r <= INT_MAX else ERROR
        if ta is float and doubles is not None:
            return doubles(a, b)
        return a + b if ta is str and strings else ERROR

    return arith


def _quotient(a: int, b: int) -> Any:
    """Rust's ``/``: truncates toward zero; by zero, or INT_MIN / -1, is an error."""
    if b == 0:
        return ERROR
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def _remainder(a: int, b: int) -> Any:
    """Rust's ``%``: the sign of the dividend."""
    q = _quotient(a, b)
    return ERROR if type(q) is _Fail or not INT_MIN <= q <= INT_MAX else a - b * q


def _fdiv(a: float, b: float) -> float:
    if b == 0.0:  # IEEE, as Rust: no exception
        return math.nan if a != a or a == 0.0 else math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


_add = _arith(operator.add, operator.add, strings=True)
_sub = _arith(operator.sub, operator.sub)
_mul = _arith(operator.mul, operator.mul)
_div = _arith(_quotient, _fdiv)
_mod = _arith(_remainder, None)


def _neg(a: Any) -> Any:
    kind = type(a)
    if kind is int:
        return a if a == INT_MIN else -a  # wraps, as the package does
    if kind is float:
        return -a
    if kind is bool:
        return not a  # the package negates a bool as ``!`` does
    return a if kind is _Fail else ERROR


def _not(a: Any) -> Any:
    """``!``; also what a condition that is no bool gives (its failure, or an error)."""
    if type(a) is bool:
        return not a
    return a if type(a) is _Fail else ERROR


def _logic(a: Any, b: Any, decisive: bool) -> Any:
    """``&&`` (``decisive`` False) or ``||``: a decisive side wins over any failure; else the
    right side's failure, then the left's; a non-bool side is an error."""
    if a is decisive or b is decisive:
        return decisive
    if type(b) is _Fail:
        return b
    return a if type(a) is _Fail or (type(a) is bool and type(b) is bool) else ERROR


def _in(a: Any, items: tuple[Any, ...]) -> Any:
    """The first failing item wins, even after a match (the package evaluates the whole list)."""
    if type(a) is _Fail:
        return a
    failed = next((item for item in items if type(item) is _Fail), None)
    return failed if failed is not None else any(_eq(a, item) is True for item in items)


def _size(a: Any) -> Any:
    if type(a) is str:
        return len(a) if a.isascii() else len(a.encode())
    return a if type(a) is _Fail else ERROR


def _string_function(method: Callable[[str, str], bool]) -> Callable[[Any, Any], Any]:
    def call(target: Any, arg: Any) -> Any:
        if type(arg) is _Fail:  # the package evaluates the argument first
            return arg
        if type(target) is _Fail:
            return target
        if type(target) is str and type(arg) is str:
            return method(target, arg)
        return ERROR

    return call


_startsWith = _string_function(str.startswith)
_endsWith = _string_function(str.endswith)
_contains = _string_function(str.__contains__)
_lt, _le, _gt, _ge = (_order(cmp) for cmp in (operator.lt, operator.le, operator.gt, operator.ge))
#: What the generated code may name.
NAMES = "LOOKUP ERROR ODD FALLBACK PLAIN _odd _step _eq _ne _logic _in _size _neg _not _startsWith _endsWith"
HELPERS: dict[str, Any] = {
    n: globals()[n] for n in f"{NAMES} _contains _lt _le _gt _ge _add _sub _mul _div _mod".split()
}
ORDER = {"<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge"}
ARITH = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod"}


class _Generator:
    """Python source for a rule set: path reads first (a trie walked once), then each rule's
    expression as one assignment per distinct subexpression."""

    def __init__(self, keys: Sequence[Key]) -> None:
        self.keys = {key: i for i, key in enumerate(keys)}
        self.lines: list[str] = []
        #: shape number → name. Numbered bottom-up: hashing the nodes walks their subtrees,
        #: quadratic in a long ``&&`` chain (16 s for 100 rules of 250 conditions).
        self.memo: dict[int, str] = {}
        self.shapes: dict[tuple[Any, ...], int] = {}
        self.numbers: dict[int, int] = {}  # id(node) → its shape number (the nodes outlive this)
        self.consts: dict[str, Any] = {}
        self.count = 0

    def reads(self) -> None:
        roots = path_trie((index, key) for key, index in self.keys.items())
        for root, node in roots.items():
            var = self.var()
            self.lines.append(f"    {var} = c.get({root!r}, ERROR)")
            self.walk(node, var, "    ")
        for (_parts, has), i in self.keys.items():
            if has:  # a bool, a failure, or odd
                self.lines.append(f"    if p{i} is ODD: odd.append({i})")
            else:
                self.lines += [
                    f"    if type(p{i}) is int:",
                    f"        if not {INT_MIN} <= p{i} <= {INT_MAX}: odd.append({i}); p{i} = ODD",
                    f"    elif type(p{i}) not in PLAIN and _odd(p{i}): odd.append({i}); p{i} = ODD",
                ]

    def walk(self, node: PathTrie, var: str, indent: str) -> None:
        if node.leaf is not None:
            self.lines.append(f"{indent}p{node.leaf} = {var}")
        if not node.children and not node.has:
            return
        self.lines.append(f"{indent}if type({var}) is dict:")
        for name, child in node.children.items():
            if child.leaf is not None and not child.children and not child.has:
                self.lines.append(f"{indent}    p{child.leaf} = {var}.get({name!r}, LOOKUP)")
                continue
            child_var = self.var()
            self.lines.append(f"{indent}    {child_var} = {var}.get({name!r}, LOOKUP)")
            self.walk(child, child_var, indent + "    ")
        for name, index in node.has.items():
            self.lines.append(f"{indent}    p{index} = {name!r} in {var}")
        self.lines.append(f"{indent}else:")
        self.lines.append(f"{indent}    s = _step({var})")
        self.lines.extend(f"{indent}    p{index} = s" for index in node.below())

    def var(self) -> str:
        self.count += 1
        return f"t{self.count}"

    def const(self, value: Any) -> str:
        """Literals are default arguments: read as fast as locals, and no code sees their text."""
        name = f"k{len(self.consts)}"
        self.consts[name] = value
        return name

    def shape(self, node: Node) -> int:
        """A number per distinct subexpression: equal numbers, equal trees."""
        if (number := self.numbers.get(id(node))) is not None:
            return number
        key: tuple[Any, ...]
        if isinstance(node, cp.Const):
            key = ("const", node.key)
        elif isinstance(node, cp.Path | cp.Has):
            key = (type(node).__name__, node.parts)
        else:  # the kind, its operator or function, and the operands' numbers
            label = getattr(node, "op", getattr(node, "name", ""))
            key = (type(node).__name__, label, *(self.shape(child) for child in cp.children(node)))
        self.numbers[id(node)] = self.shapes.setdefault(key, len(self.shapes))
        return self.numbers[id(node)]

    def emit(self, node: Node) -> str:
        """The name (or literal) holding ``node``'s value, emitting its assignment once."""
        number = self.shape(node)
        if number not in self.memo:
            if isinstance(node, cp.Const):
                self.memo[number] = self.const(node.value)
            elif isinstance(node, cp.Path | cp.Has):
                self.memo[number] = f"p{self.keys[(node.parts, isinstance(node, cp.Has))]}"
            else:
                code = self.code(node)
                var = self.var()
                self.lines.append(f"    {var} = {code}")
                self.memo[number] = var
        return self.memo[number]

    def code(self, node: Node) -> str:
        if isinstance(node, cp.Unary):
            a = self.emit(node.arg)
            return f"({a} is False) if type({a}) is bool else _not({a})" if node.op == "!" else f"_neg({a})"
        if isinstance(node, cp.InList):
            items = [self.emit(item) for item in node.items]
            return f"_in({self.emit(node.arg)}, ({''.join(i + ', ' for i in items)}))"
        if isinstance(node, cp.Cond):
            t, x, y = self.emit(node.test), self.emit(node.then), self.emit(node.other)
            return f"{x} if {t} is True else ({y} if {t} is False else _not({t}))"
        if isinstance(node, cp.Call):
            target = self.emit(node.target)
            if node.name == "size":
                return f"_size({target})"
            return f"_{node.name}({target}, {self.emit(node.args[0])})"
        assert isinstance(node, cp.Binary)
        return self.binary(node)

    def binary(self, node: cp.Binary) -> str:
        op, a, b = node.op, self.emit(node.left), self.emit(node.right)
        if op in ("&&", "||"):  # a decisive side, both the other bool, or the general case
            d, o = ("False", "True") if op == "&&" else ("True", "False")
            general = f"({o} if {a} is {o} and {b} is {o} else _logic({a}, {b}, {d}))"
            return f"{d} if {a} is {d} or {b} is {d} else {general}"
        if op in ARITH:
            return f"{ARITH[op]}({a}, {b})"
        generic = f"{ORDER.get(op, '_eq' if op == '==' else '_ne')}({a}, {b})"
        for const, other in ((node.right, a), (node.left, b)):
            fast = _fast_type(const)
            if fast is not None:  # the usual ``path OP literal``: one type test, then Python's OP
                guard = f" and {other} == {other}" if fast == "float" else ""
                return f"({a} {op} {b}) if type({other}) is {fast}{guard} else {generic}"
        return generic


def _fast_type(node: Node) -> str | None:
    """The type a literal shares with a value for Python's operator to be CEL's (finite only)."""
    value = node.value if isinstance(node, cp.Const) else None
    if value is None or (type(value) is float and not math.isfinite(value)):
        return None
    return type(value).__name__


#: Subexpressions translated per rule set, a generated line each (the shipped and bench sets: a few hundred).
MAX_NODES = 10_000


class ScalarRules:
    """A rule set's rules as one generated function: ``rules(context)`` gives each rule's
    value (True, False, another value, :data:`LOOKUP`, :data:`ERROR` or :data:`FALLBACK`)."""

    def __init__(self, exprs: Sequence[str]) -> None:
        nodes: list[Node | None] = []
        budget = MAX_NODES
        for expr in exprs:
            try:
                node: Node | None = cp.parse(expr) if budget >= 0 else None
                budget -= cp.count(node) if node is not None else 0
            except (cp.Unsupported, RecursionError):
                node = None
            nodes.append(node if budget >= 0 else None)  # past it, the programs: compile() costs 40 µs a line
        read = [cp.reads(node) if node is not None else set() for node in nodes]
        keys = sorted(set().union(*read))
        generator = _Generator(keys)
        generator.lines.append("    odd = []")
        generator.reads()
        results = []
        for node in nodes:
            try:
                results.append("FALLBACK" if node is None else generator.emit(node))
            except RecursionError:  # too deep to generate: the program runs it
                results.append("FALLBACK")
        generator.lines.append(f"    return [{', '.join(results)}], odd")
        namespace = {**HELPERS, **generator.consts}
        params = "".join(f", {name}={name}" for name in generator.consts)
        source = f"def rules(c{params}):\n" + "\n".join(generator.lines)
        exec(compile(source, "<cel_scalar>", "exec"), namespace)  # noqa: S102 - keys enter by repr()
        self.source = source
        self.size = len(nodes)
        self.function: Callable[[Mapping[str, Any]], tuple[list[Any], list[int]]] = namespace["rules"]
        #: key index → the rules that read it (an odd value there sends them to their program).
        self.readers: dict[int, list[int]] = {}
        for k, key in ((k, key) for k, paths in enumerate(read) for key in paths):
            self.readers.setdefault(generator.keys[key], []).append(k)

    def __call__(self, context: Mapping[str, Any]) -> list[Any]:
        try:
            values, odd = self.function(context)
        except Exception:  # not expected; the programs answer instead
            return [FALLBACK] * self.size
        for index in odd:
            for k in self.readers[index]:
                values[k] = FALLBACK
        return values
