"""Where signed TUF metadata lives: a protocol the DB implements, and a test double.

Every file is keyed by (app, role, version). The store only appends: a version is
written once, and ``commit`` is the compare-and-swap that keeps concurrent publishers
from ever signing two different files with one version.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Protocol

from mpaas.signing.errors import VersionConflict
from mpaas.signing.tuf_root import ROOT, TIMESTAMP, TOP_LEVEL_ROLES

_FILENAME = re.compile(r"(?:(?P<version>[1-9][0-9]{0,17})\.)?(?P<role>[a-z]+)\.json")

Write = tuple[str, int, bytes]
"""(role, version, signed metadata bytes)."""


class MetadataStore(Protocol):
    async def load_latest(self, app: str, role: str) -> bytes | None:
        """The highest version of ``role`` for ``app``, or None if there is none."""
        ...

    async def commit(self, app: str, writes: list[Write]) -> None:
        """Store all ``writes`` atomically, or none.

        Raises VersionConflict if any (app, role, version) already exists.
        """
        ...

    async def get(self, app: str, filename: str) -> bytes | None:
        """A file as clients name it: ``1.root.json``, ``7.targets.json``, ``timestamp.json``."""
        ...


def metadata_filename(role: str, version: int) -> str:
    """The consistent-snapshot file name; the timestamp is always ``timestamp.json``."""
    return "timestamp.json" if role == TIMESTAMP else f"{version}.{role}.json"


def parse_metadata_filename(filename: str) -> tuple[str, int | None] | None:
    """``"3.snapshot.json"`` -> ("snapshot", 3); ``"timestamp.json"`` -> ("timestamp", None).

    Unversioned names are accepted for root and timestamp only (the latest version);
    anything else, including non-canonical numbers like ``01``, gives None.
    """
    match = _FILENAME.fullmatch(filename)
    if match is None or match["role"] not in TOP_LEVEL_ROLES:
        return None
    if match["version"] is None:
        return (match["role"], None) if match["role"] in (ROOT, TIMESTAMP) else None
    return match["role"], int(match["version"])


def check_writes(writes: Sequence[Write]) -> None:
    """Reject a change that names one (role, version) twice or an unknown role."""
    seen: set[tuple[str, int]] = set()
    for role, version, _ in writes:
        if role not in TOP_LEVEL_ROLES or version < 1:
            raise ValueError(f"invalid metadata write {role} v{version}")
        if (role, version) in seen:
            raise VersionConflict(f"{role} v{version} appears twice in one change")
        seen.add((role, version))


class InMemoryMetadataStore:
    """A dict-backed :class:`MetadataStore` with the DB's uniqueness rule.

    Each call yields to the event loop first, so concurrent publishers interleave the
    way they would against a database.
    """

    def __init__(self) -> None:
        self._files: dict[tuple[str, str, int], bytes] = {}
        self._latest: dict[tuple[str, str], int] = {}

    async def load_latest(self, app: str, role: str) -> bytes | None:
        await asyncio.sleep(0)
        version = self._latest.get((app, role))
        return None if version is None else self._files[(app, role, version)]

    async def commit(self, app: str, writes: list[Write]) -> None:
        await asyncio.sleep(0)
        # No await below: the check and the inserts form one atomic step.
        check_writes(writes)
        for role, version, _ in writes:
            if (app, role, version) in self._files:
                raise VersionConflict(f"{app}: {role} v{version} already exists")
        for role, version, data in writes:
            self._files[(app, role, version)] = data
            self._latest[(app, role)] = max(version, self._latest.get((app, role), 0))

    async def get(self, app: str, filename: str) -> bytes | None:
        await asyncio.sleep(0)
        parsed = parse_metadata_filename(filename)
        if parsed is None:
            return None
        role, version = parsed
        if version is None:
            version = self._latest.get((app, role))
            if version is None:
                return None
        return self._files.get((app, role, version))

    def versions(self, app: str, role: str) -> list[int]:
        """Every stored version of a role, ascending (for tests and diagnostics)."""
        return sorted(v for (a, r, v) in self._files if a == app and r == role)
