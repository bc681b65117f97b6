"""The dependency rule of docs/architecture.md, checked on every import in the package.

An AST walk, not an import-time hook: it sees imports inside functions too (the lazy
imports in ``mpaas/app.py`` and the CLI), and it needs nothing installed beyond the tree.

- Core is layered, lowest first: base (settings, errors, logs) < storage < web <
  appkeys < identity < ops and gateway < app. A core module imports only its own
  layer or lower; ops and gateway do not import each other.
- Only ``mpaas.app``, the one wiring module, imports a domain.
- A domain imports core (never ``mpaas.app``), itself, and only the other domains
  listed in ``DOMAIN_MAY_USE``. No domain imports the CLI.
- The CLI, a user interface over the domains, may import anything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package_dir of setup.cfg: where each top-level part of the namespace lives.
SOURCE_DIRS = {
    "mpaas.cli": "cli",
    "mpaas.packages": "packages",
    "mpaas.signing": "signing",
    "mpaas.push": "push",
    "mpaas.analytics": "analytics",
    "mpaas.banking": "banking",
    "mpaas": "mpaas",
}
DOMAINS = ("mpaas.packages", "mpaas.signing", "mpaas.push", "mpaas.analytics", "mpaas.banking")
#: Which other domains a domain may use. Signing signs what it is handed and knows no
#: packages; analytics reads events and never the ledger.
DOMAIN_MAY_USE: dict[str, tuple[str, ...]] = {
    "mpaas.packages": ("mpaas.signing", "mpaas.analytics"),
    "mpaas.signing": (),
    "mpaas.push": ("mpaas.analytics",),
    "mpaas.analytics": (),
    "mpaas.banking": ("mpaas.packages", "mpaas.analytics"),
}
CORE_LAYERS: tuple[tuple[str, ...], ...] = (
    ("mpaas", "mpaas.settings", "mpaas.errors", "mpaas.logs"),
    ("mpaas.storage",),
    ("mpaas.web",),
    ("mpaas.appkeys",),
    ("mpaas.identity",),
    ("mpaas.ops", "mpaas.gateway", "mpaas.console"),
    ("mpaas.app",),
)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def owner(module: str) -> str:
    """The unit a module belongs to: the CLI, a domain, or a core part (longest prefix)."""
    for unit in ("mpaas.cli", *DOMAINS):
        if _within(module, unit):
            return unit
    for layer in CORE_LAYERS[1:]:
        for part in layer:
            if _within(module, part):
                return part
    return "mpaas"  # the base layer (settings, errors, logs) is one unit


def core_layer(unit: str) -> int:
    for level, layer in enumerate(CORE_LAYERS):
        if unit in layer:
            return level
    raise KeyError(unit)


#: Entry points run by a tool rather than imported by the package: Alembic loads
#: env.py, which needs every domain's tables, so it asks the wiring module for them.
ENTRY_POINTS = {("mpaas.storage.migrations.env", "mpaas.app")}


def violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``, or None when the rule allows it."""
    if not _within(imported, "mpaas"):
        return None
    if (importer, owner(imported)) in ENTRY_POINTS:
        return None
    src, dst = owner(importer), owner(imported)
    if src == dst or src == "mpaas.cli":
        return None
    if dst == "mpaas.cli":
        return "only the CLI imports the CLI"
    if src in DOMAINS:
        if dst == "mpaas.app":
            return "a domain never imports the wiring module mpaas.app"
        if dst in DOMAINS and dst not in DOMAIN_MAY_USE[src]:
            return f"{src} may not use {dst}"
        return None
    if dst in DOMAINS:
        return None if src == "mpaas.app" else "only mpaas.app, the wiring module, imports a domain"
    if core_layer(dst) > core_layer(src):
        return f"core layer {src} may not import the higher layer {dst}"
    if core_layer(dst) == core_layer(src) and dst != "mpaas":
        return f"{src} and {dst} are peers and may not import each other"
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    for prefix, folder in sorted(SOURCE_DIRS.items(), key=lambda kv: len(kv[1]), reverse=True):
        if rel.parts[0] == folder:
            parts = [*prefix.split("."), *rel.with_suffix("").parts[1:]]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


def imports_of(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """Every module an import statement names, with relative imports resolved."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # ``from mpaas.identity import audit`` names the module mpaas.identity.audit.
                yield node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base


def source_files() -> Iterator[Path]:
    for folder in SOURCE_DIRS.values():
        yield from sorted((ROOT / folder).rglob("*.py"))


def check_tree() -> list[str]:
    problems = []
    for path in source_files():
        module = module_name(path)
        for line, imported in imports_of(path.read_text(), module, path.name == "__init__.py"):
            why = violation(module, imported)
            if why:
                problems.append(f"{path.relative_to(ROOT)}:{line}: imports {imported}: {why}")
    return problems


def test_the_tree_keeps_the_dependency_rule() -> None:
    assert check_tree() == []


def test_the_walk_sees_every_part_of_the_namespace() -> None:
    seen = {owner(module_name(p)) for p in source_files()}
    assert {"mpaas.cli", "mpaas.packages", "mpaas.signing", "mpaas.push"} <= seen
    assert {"mpaas.storage", "mpaas.web", "mpaas.identity", "mpaas.ops", "mpaas.app"} <= seen


@pytest.mark.parametrize(
    ("importer", "line", "why"),
    [
        ("mpaas.signing.service", "from mpaas.packages.models import Package", "may not use mpaas.packages"),
        ("mpaas.push.queue", "from mpaas.cli.output import table", "only the CLI"),
        ("mpaas.packages.api", "from mpaas.app import create_app", "wiring module"),
        ("mpaas.storage.db", "from mpaas.identity.models import App", "higher layer"),
        ("mpaas.web.api", "from mpaas.identity import guard", "higher layer"),
        ("mpaas.identity.api", "import mpaas.push.service", "only mpaas.app"),
        ("mpaas.ops.api", "from mpaas.gateway import nonces", "peers"),
        ("mpaas.analytics.loader", "from mpaas.banking.ledger import post", "may not use mpaas.banking"),
        ("mpaas.packages.intake.unpack", "from ...cli import output", "only the CLI"),
    ],
)
def test_a_deliberate_bad_import_is_caught(importer: str, line: str, why: str) -> None:
    found = [violation(importer, name) for _, name in imports_of(line, importer, False)]
    assert any(v and why in v for v in found), found


@pytest.mark.parametrize(
    ("importer", "line"),
    [
        ("mpaas.app", "from mpaas.push.service import PushService"),
        ("mpaas.cli.keys", "from mpaas.signing.keys import KeyType"),
        ("mpaas.packages.releases.wiring", "from mpaas.signing.service_key import SIGNING"),
        ("mpaas.identity.guard", "from mpaas.web.api import Handler"),
        ("mpaas.push.api", "from mpaas.identity.guard import actor_of"),
        ("mpaas.web.openapi", "from mpaas import __version__"),
    ],
)
def test_allowed_imports_pass(importer: str, line: str) -> None:
    assert [violation(importer, name) for _, name in imports_of(line, importer, False)] == [None]
