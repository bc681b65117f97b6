"""No validator lets a trailing newline through (issue 13).

``re.match`` with a pattern ending in ``$`` accepts ``"1.0.0\\n"``: ``$`` matches before a
final newline. Every use of an end-anchored pattern must be ``fullmatch``. This walks the
AST of the whole namespace for ``NAME.match(...)`` where ``NAME`` is bound to
``re.compile("...$")`` in the same module, and for ``re.match("...$", ...)``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("mpaas", "cli", "packages", "signing", "push", "analytics", "banking")


def _end_anchored(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith("$")


def _is_re_call(node: ast.AST, name: str) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == name
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "re"
    )


def flawed_matches(source: str) -> list[int]:
    tree = ast.parse(source)
    anchored: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_re_call(node.value, "compile"):
            call = node.value
            assert isinstance(call, ast.Call)
            if call.args and _end_anchored(call.args[0]):
                anchored |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr != "match":
            continue
        receiver = node.func.value
        named = isinstance(receiver, ast.Name) and receiver.id in anchored
        literal = _is_re_call(node, "match") and bool(node.args) and _end_anchored(node.args[0])
        if named or literal:
            lines.append(node.lineno)
    return lines


def test_no_end_anchored_pattern_is_used_with_match() -> None:
    found = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found += [f"{path.relative_to(ROOT)}:{n}" for n in flawed_matches(path.read_text())]
    assert found == []


def test_the_walk_finds_the_flaw() -> None:
    bad = 'import re\nV = re.compile(r"^[0-9.]+$")\ndef ok(s):\n    return V.match(s)\n'
    assert flawed_matches(bad) == [4]
    assert flawed_matches('import re\nre.match(r"^a$", s)\n') == [2]
    assert flawed_matches(bad.replace("V.match", "V.fullmatch")) == []
