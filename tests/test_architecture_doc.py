"""docs/architecture.md names every subpackage of the namespace, so the map stays true.

Subpackages are the folders with an ``__init__.py`` under each folder that setup.cfg's
``package_dir`` maps (Alembic's revision folder aside), named by their dotted import name.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
SKIP = {"mpaas.storage.migrations.versions"}


def package_dirs() -> dict[str, str]:
    """``package_dir`` of setup.cfg: import name -> folder."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pairs = (line.split("=") for line in cfg["options"]["package_dir"].strip().splitlines())
    return {name.strip(): folder.strip() for name, folder in pairs}


def subpackages() -> set[str]:
    names = set()
    for prefix, folder in package_dirs().items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            names.add(".".join([prefix, *parts]))
    return {n for n in names if not any(n == s or n.startswith(s + ".") for s in SKIP)}


def missing_from(text: str, names: Iterable[str]) -> list[str]:
    """Names not written on their own: ``mpaas.storage`` inside ``mpaas.storage.blobs`` does not count."""
    return sorted(n for n in names if not re.search(rf"(?<![\w.]){re.escape(n)}(?!\w|\.\w)", text))


def test_every_subpackage_is_on_the_map() -> None:
    assert missing_from(DOC.read_text(), subpackages()) == []


def test_the_walk_sees_the_tree() -> None:
    found = subpackages()
    assert {"mpaas", "mpaas.cli", "mpaas.web", "mpaas.storage.blobs", "mpaas.packages.intake"} <= found
    assert {"mpaas.push.providers", "mpaas.signing"} <= found
    assert not found & SKIP


def test_a_name_only_inside_a_longer_one_is_missing() -> None:
    text = "`mpaas.storage.blobs` and mpaas.push."
    assert missing_from(text, ["mpaas.storage", "mpaas.storage.blobs", "mpaas.push", "mpaas.web"]) == [
        "mpaas.storage",
        "mpaas.web",
    ]
