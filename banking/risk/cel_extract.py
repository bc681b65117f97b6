"""One pass over a page's rows that reads every context path a draft needs.

Reading path by path touches each row's maps once per path; on a busy machine the cache
misses cost several times the lookups. The extractor is generated Python (one function per
set of paths, cached) that walks each row once, row-major, down a trie of the paths. Keys
enter the code only through ``repr``.

Per path it yields what ``cel`` meets: the value; ``ABSENT`` for a missing key (a lookup
error); ``FAILED`` for an undefined root or a field of a non-map; ``ODD_VALUE`` under a
list. A ``has()`` path yields a bool (or the same failures).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Key = tuple[tuple[str, ...], bool]
Extractor = Callable[[Sequence[Mapping[str, Any]]], list[list[Any]]]
FACTS = "_engine"  # compose() hides it from CEL: an undefined root
_CACHE: dict[tuple[Key, ...], Extractor] = {}


@dataclass
class PathTrie:
    """Context paths by their parts: ``leaf``, the output of the path ending here; ``has``,
    the outputs of ``has(...)`` of a field here (also read by the live rules, ``cel_scalar``)."""

    leaf: int | None = None
    has: dict[str, int] = field(default_factory=dict)
    children: dict[str, PathTrie] = field(default_factory=dict)

    def below(self) -> list[int]:
        """The outputs under this node (not its own value)."""
        out = list(self.has.values())
        for child in self.children.values():
            out += ([child.leaf] if child.leaf is not None else []) + child.below()
        return out


def path_trie(indexed: Iterable[tuple[int, Key]]) -> dict[str, PathTrie]:
    """The tries of ``(output index, key)`` pairs, by root."""
    roots: dict[str, PathTrie] = {}
    for index, (parts, has) in indexed:
        node = roots.setdefault(parts[0], PathTrie())
        for part in parts[1 : len(parts) - 1 if has else len(parts)]:
            node = node.children.setdefault(part, PathTrie())
        if has:
            node.has[parts[-1]] = index
        else:
            node.leaf = index
    return roots


def extractor(keys: tuple[Key, ...], names: Mapping[str, Any]) -> Extractor:
    """A function rows → one list per key (in ``keys`` order); ``names`` gives the sentinels
    (``ABSENT``, ``FAILED``) and ``_step`` (what a field of a non-map gives)."""
    if keys not in _CACHE:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[keys] = _generate(keys, names)
    return _CACHE[keys]


def _generate(keys: tuple[Key, ...], names: Mapping[str, Any]) -> Extractor:
    roots = path_trie(enumerate(keys))
    lines = ["def extract(rows):"]
    lines += [f"    o{i} = []; a{i} = o{i}.append" for i in range(len(keys))]
    lines.append("    for r in rows:")
    counter = [0]

    def emit(node: PathTrie, var: str, indent: str) -> None:
        if node.leaf is not None:
            lines.append(f"{indent}a{node.leaf}({var})")
        if not node.children and not node.has:
            return
        lines.append(f"{indent}if type({var}) is dict:")
        for name, child in node.children.items():
            counter[0] += 1
            child_var = f"v{counter[0]}"
            lines.append(f"{indent}    {child_var} = {var}.get({name!r}, ABSENT)")
            emit(child, child_var, indent + "    ")
        for name, index in node.has.items():
            lines.append(f"{indent}    a{index}({name!r} in {var})")
        lines.append(f"{indent}else:")
        lines.append(f"{indent}    s = _step({var})")
        lines.extend(f"{indent}    a{index}(s)" for index in node.below())

    for root, node in roots.items():
        counter[0] += 1
        var = f"v{counter[0]}"
        value = "FAILED" if root == FACTS else f"r.get({root!r}, FAILED)"
        lines.append(f"        {var} = {value}")
        emit(node, var, "        ")
    lines.append(f"    return [{', '.join(f'o{i}' for i in range(len(keys)))}]")
    namespace = dict(names)
    exec("\n".join(lines), namespace)  # noqa: S102 - code from a trie of repr()'d keys
    return namespace["extract"]
