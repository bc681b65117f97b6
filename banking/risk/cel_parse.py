"""A small recursive-descent parser for the subset of CEL the columnar backtest translates.

It never decides whether a rule is valid (``rules.py`` compiles every rule with the ``cel``
package first); it only recognises the forms :mod:`mpaas.banking.risk.cel_vector` can evaluate
over columns, and raises :class:`Unsupported` for anything else, so that rule falls back to
row-wise CEL. Supported: ``null``, ``true``/``false``, int and double literals, plain quoted
strings, context paths (``vel.user.count_1h``), ``has(path)``, unary ``-`` and ``!``,
``* / % + -``, ``< <= > >= == !=``, ``x in [list literal]``, ``&&``, ``||``, ``c ? a : b``,
``size(x)`` / ``x.size()``, and ``startsWith``, ``endsWith``, ``contains``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
STRING_FUNCTIONS = ("startsWith", "endsWith", "contains")


class Unsupported(Exception):
    """The expression uses a form the columnar evaluator does not translate."""


@dataclass(frozen=True)
class Const:
    value: bool | int | float | str | None
    #: Tells apart what Python's == does not: 1, 1.0 and true; 0.0 and -0.0 (nodes key memos).
    key: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{type(self.value).__name__}:{self.value!r}")


@dataclass(frozen=True)
class Path:
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Has:
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Unary:
    op: str
    arg: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class InList:
    arg: Node
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Cond:
    test: Node
    then: Node
    other: Node


@dataclass(frozen=True)
class Call:
    name: str
    target: Node
    args: tuple[Node, ...]


Node = Union[Const, Path, Has, Unary, Binary, InList, Cond, Call]  # noqa: UP007

TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<double>\d*\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)"
    r"|(?P<int>\d+)(?P<bad_num>[uUxX.A-Za-z_])?"
    r"|(?P<str>'[^'\\\n]*'|\"[^\"\\\n]*\")"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>&&|\|\||==|!=|<=|>=|[-+*/%<>!?:.,()\[\]])"
    r")"
)
KEYWORDS = {"true": True, "false": False, "null": None}
RELATIONS = ("<", "<=", ">", ">=", "==", "!=", "in")


def tokenize(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = TOKEN.match(text, pos)
        if match is None or match.group("bad_num") is not None:
            raise Unsupported(f"token at {pos}")
        kind = match.lastgroup or ""
        if text.startswith(("r'", 'r"', "b'", 'b"', "R'", 'R"', "B'", 'B"'), match.start(kind)):
            raise Unsupported("raw or bytes string")
        out.append((kind, match.group(kind)))
        pos = match.end()
    out.append(("end", ""))
    return out


class Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self) -> str:
        return self.tokens[self.pos][1] if self.tokens[self.pos][0] in ("op", "ident") else ""

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, op: str) -> None:
        if self.take() != ("op", op):
            raise Unsupported(f"expected {op}")

    def parse(self) -> Node:
        node = self.expr()
        if self.tokens[self.pos][0] != "end":
            raise Unsupported("trailing input")
        return node

    def expr(self) -> Node:
        test = self.or_()
        if self.peek() == "?":
            self.take()
            then = self.or_()
            self.expect(":")
            return Cond(test, then, self.expr())
        return test

    def or_(self) -> Node:
        node = self.and_()
        while self.peek() == "||":
            self.take()
            node = Binary("||", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.relation()
        while self.peek() == "&&":
            self.take()
            node = Binary("&&", node, self.relation())
        return node

    def relation(self) -> Node:
        node = self.addition()
        while self.peek() in RELATIONS:
            op = self.take()[1]
            right = self.addition()
            if op == "in":
                if not isinstance(right, _ListLiteral):
                    raise Unsupported("'in' over something other than a list literal")
                node = InList(node, right.items)
            else:
                node = Binary(op, node, right)
        return _no_list(node)

    def addition(self) -> Node:
        node = self.multiplication()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            node = Binary(op, _no_list(node), _no_list(self.multiplication()))
        return node

    def multiplication(self) -> Node:
        node = self.unary()
        while self.peek() in ("*", "/", "%"):
            op = self.take()[1]
            node = Binary(op, _no_list(node), _no_list(self.unary()))
        return node

    def unary(self) -> Node:
        if self.peek() == "!":
            self.take()
            return Unary("!", _no_list(self.unary()))
        if self.peek() == "-":
            self.take()
            kind, text = self.tokens[self.pos]
            if kind == "int" and self.tokens[self.pos + 1][1] not in (".", "["):
                self.take()  # a negative int literal, as CEL's parser reads it (INT_MIN included)
                return _int(-int(text))
            return Unary("-", _no_list(self.unary()))
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while self.peek() == ".":
            self.take()
            kind, name = self.take()
            if kind != "ident" or name in KEYWORDS or name == "in":
                raise Unsupported("field name")
            if self.peek() == "(":
                self.take()
                args = self.args(")")
                node = _method(_no_list(node), name, args)
            elif isinstance(node, Path):
                node = Path((*node.parts, name))
            else:
                raise Unsupported("field of a computed value")
        if self.peek() == "[":
            raise Unsupported("indexing")
        if isinstance(node, _Ident):
            raise Unsupported("a whole root")
        return node

    def args(self, close: str) -> tuple[Node, ...]:
        items: list[Node] = []
        if self.peek() == close:
            self.take()
            return ()
        while True:
            items.append(_no_list(self.expr()))
            kind, text = self.take()
            if (kind, text) == ("op", close):
                return tuple(items)
            if (kind, text) != ("op", ","):
                raise Unsupported("argument list")

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "int":
            return _int(int(text))
        if kind == "double":
            return Const(float(text))
        if kind == "str":
            return Const(text[1:-1])
        if kind == "ident":
            if text in KEYWORDS:
                return Const(KEYWORDS[text])
            if self.peek() == "(":
                self.take()
                return _function(text, self.args(")"))
            return _Ident((text,))
        if (kind, text) == ("op", "("):
            node = self.expr()
            self.expect(")")
            return _no_list(node)
        if (kind, text) == ("op", "["):
            return _ListLiteral(self.args("]"))  # type: ignore[return-value]  # only "in" takes it
        raise Unsupported(f"unexpected {text!r}")


@dataclass(frozen=True)
class _ListLiteral:
    items: tuple[Node, ...]


class _Ident(Path):
    """A bare root name; it becomes a :class:`Path` once a field is selected."""


def _no_list(node: object) -> Node:
    if isinstance(node, _ListLiteral):
        raise Unsupported("a list outside 'in'")
    return node  # type: ignore[return-value]


def _int(value: int) -> Const:
    if not INT_MIN <= value <= INT_MAX:
        raise Unsupported("int literal out of range")
    return Const(value)


def _method(target: Node, name: str, args: tuple[Node, ...]) -> Node:
    if isinstance(target, _Ident):
        raise Unsupported("a method of a whole root")
    if name in STRING_FUNCTIONS and len(args) == 1:
        return Call(name, target, args)
    if name == "size" and not args:
        return Call("size", target, ())
    raise Unsupported(f"method {name}")


def _function(name: str, args: tuple[Node, ...]) -> Node:
    if name == "size" and len(args) == 1:
        return Call("size", args[0], ())
    if name == "has" and len(args) == 1 and isinstance(args[0], Path) and not isinstance(args[0], _Ident):
        return Has(args[0].parts)
    raise Unsupported(f"function {name}")


def parse(text: str) -> Node:
    """The AST of ``text``, or :class:`Unsupported`."""
    try:
        return Parser(text).parse()
    except (IndexError, ValueError, RecursionError) as exc:
        raise Unsupported(str(exc)) from None


def reads(node: Node) -> set[tuple[tuple[str, ...], bool]]:
    """Every context path ``node`` reads, with whether it is read under ``has()``."""
    if isinstance(node, Path):
        return {(node.parts, False)}
    if isinstance(node, Has):
        return {(node.parts, True)}
    return set().union(*(reads(child) for child in children(node)))


def children(node: Node) -> tuple[Node, ...]:
    """The operands of ``node``, left to right (none for a literal or a path)."""
    if isinstance(node, Unary):
        return (node.arg,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, InList):
        return (node.arg, *node.items)
    if isinstance(node, Cond):
        return (node.test, node.then, node.other)
    if isinstance(node, Call):
        return (node.target, *node.args)
    return ()


def count(node: Node) -> int:
    """How many subexpressions ``node`` holds, itself included."""
    return 1 + sum(count(child) for child in children(node))
