"""The catalogue as the loader applies it: compiled definitions and the per-event check.

- ``record``: the event is stored as sent.
- ``warn``: its properties are validated against the schema; each violation becomes a
  ``schema:`` flag on the stored event.
- ``reject``: as ``warn``, and properties the schema does not declare are removed
  before the event is stored (flag ``removed:<name>``); the event itself is kept.

An event no definition covers is stored and flagged ``undeclared``: never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from mpaas.analytics.catalog.builtin import BUILTIN

MAX_FLAGS = 5


@dataclass(frozen=True)
class Compiled:
    mode: str
    validator: Draft202012Validator | None
    declared: frozenset[str]
    allowed: frozenset[str]


def compile_definition(mode: str, schema: Mapping[str, Any], pii_allowed: Iterable[str]) -> Compiled:
    validator = Draft202012Validator(dict(schema)) if schema and mode != "record" else None
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    declared = frozenset(props) if isinstance(props, Mapping) else frozenset()
    return Compiled(mode, validator, declared, frozenset(pii_allowed))


_BUILTIN = {name: compile_definition("warn", schema, ()) for name, (_d, schema) in BUILTIN.items()}


class CatalogSnapshot:
    """Every app's definitions at one moment, plus the built-in ones."""

    def __init__(self, definitions: Mapping[tuple[str, str], Compiled] | None = None) -> None:
        self._defs = dict(definitions or {})

    def lookup(self, app: str, name: str) -> Compiled | None:
        found = _BUILTIN.get(name)
        return found if found is not None else self._defs.get((app, name))

    def __len__(self) -> int:
        return len(self._defs)


def check(definition: Compiled, properties: dict[str, Any]) -> list[str]:
    """Apply a definition to an event's properties (in place for ``reject``); the flags."""
    flags: list[str] = []
    if definition.validator is None:
        return flags
    if definition.mode == "reject":
        for name in [k for k in properties if k not in definition.declared]:
            del properties[name]
            if len(flags) < MAX_FLAGS:
                flags.append(f"removed:{name[:64]}")
    for error in definition.validator.iter_errors(properties):
        if len(flags) >= 2 * MAX_FLAGS:
            break
        where = ".".join(str(p) for p in error.absolute_path)
        flags.append(f"schema:{where + ': ' if where else ''}{error.message[:160]}")
    return flags
