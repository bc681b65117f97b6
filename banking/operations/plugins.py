"""In-process operations from other packages, through the entry-point group ``mpaas.operations``.

An entry point names a :class:`~mpaas.banking.operations.declare.Declared` operation, a
list of them, or a callable returning either. A plug-in that fails to load is logged and
skipped, with its name and the exception type only, so one broken package does not stop
the gateway; ``mpaas operations list`` shows what was loaded and from where.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from mpaas.banking.operations.declare import Declared

GROUP = "mpaas.operations"
log = logging.getLogger("mpaas.banking.plugins")


@dataclass(frozen=True)
class Loaded:
    declared: Declared
    origin: str


def _items(obj: Any) -> list[Declared]:
    if isinstance(obj, Declared):
        return [obj]
    if callable(obj) and not isinstance(obj, type):
        return _items(obj())
    if isinstance(obj, Iterable) and not isinstance(obj, str | bytes):
        found = list(obj)
        if all(isinstance(item, Declared) for item in found):
            return found
    raise TypeError("an entry point must name a declared operation, a list of them, or a callable")


def load_plugins(group: str = GROUP) -> tuple[list[Loaded], list[str]]:
    """Every operation the installed packages declare, and one line per plug-in that failed."""
    loaded: list[Loaded] = []
    failed: list[str] = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        origin = f"{ep.dist.name if ep.dist else 'unknown'}:{ep.name}"
        try:
            items = _items(ep.load())
        except Exception as exc:
            log.error(
                "operation plug-in failed to load", extra={"plugin": origin, "error": type(exc).__name__}
            )
            failed.append(f"{origin}: {type(exc).__name__}")
            continue
        loaded.extend(Loaded(item, origin) for item in items)
    return loaded, failed
