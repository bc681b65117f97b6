"""What signing is handed to sign: target files, and the source they come from.

Signing knows nothing of what a target *is* (a package archive, a patch, a manifest):
the domain that publishes files describes each one as a :class:`TargetSpec` (name,
length, sha256 and signed custom fields) and answers the questions of a
:class:`TargetSource`. ``mpaas/app.py`` wires that source into the signing service.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from tuf.api.metadata import TargetFile

from mpaas.identity.models import App
from mpaas.signing.errors import InvalidTarget

HASH_ALGORITHM = "sha256"
MAX_TARGET_NAME = 1024
#: The signed custom field that lists the channels a target is released to (ADR 0003).
CHANNELS_FIELD = "channels"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FORBIDDEN_IN_NAME = re.compile(r"[\x00-\x1f\x7f\\]")
_TARGET_FILE = re.compile(r"(?P<sha256>[0-9a-f]{64})\.(?P<basename>[^/]+)")

U_contra = TypeVar("U_contra", contravariant=True)


def check_target_name(name: str) -> str:
    """A target name is a relative POSIX path: no empty, ``.`` or ``..`` segment."""
    if not name or len(name) > MAX_TARGET_NAME:
        raise InvalidTarget(f"target names are 1 to {MAX_TARGET_NAME} characters")
    if _FORBIDDEN_IN_NAME.search(name):
        raise InvalidTarget(f"target name {name!r} contains a control character or backslash")
    if any(segment in ("", ".", "..") for segment in name.split("/")):
        raise InvalidTarget(f"target name {name!r} must be a relative path without empty, . or .. parts")
    return name


def target_path_on_disk(name: str, sha256: str) -> str:
    """Where a consistent-snapshot client fetches a target: ``{dir/}{sha256}.{basename}``."""
    check_target_name(name)
    if not _SHA256.fullmatch(sha256):
        raise InvalidTarget("sha256 must be 64 lowercase hex digits")
    dirname, sep, basename = name.rpartition("/")
    return f"{dirname}{sep}{sha256}.{basename}"


@dataclass(frozen=True)
class TargetBlob:
    """A target file request, ``{dir/}{sha256}.{basename}``, resolved to the blob of its bytes."""

    sha256: str
    basename: str

    @classmethod
    def parse(cls, path: str) -> TargetBlob | None:
        """The blob a consistent-snapshot target path names, or None if it names none."""
        _dirname, _, filename = path.rpartition("/")
        match = _TARGET_FILE.fullmatch(filename)
        return None if match is None else cls(match["sha256"], match["basename"])


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One file clients may download, e.g. ``offline/transfer/1.2.0/full.zip``.

    ``custom`` (kind, id, version, channels, ...) is signed with the target and must
    be JSON-serialisable.
    """

    name: str
    length: int
    sha256: str
    custom: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_target_name(self.name)
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 0:
            raise InvalidTarget(f"{self.name}: length must be a non-negative integer")
        if not _SHA256.fullmatch(self.sha256):
            raise InvalidTarget(f"{self.name}: sha256 must be 64 lowercase hex digits")
        try:
            json.dumps(dict(self.custom), allow_nan=False)
        except (TypeError, ValueError):
            raise InvalidTarget(f"{self.name}: custom must be JSON-serialisable") from None

    def with_custom(self, extra: Mapping[str, Any]) -> TargetSpec:
        """The same file with ``extra`` merged into its custom fields."""
        return TargetSpec(self.name, self.length, self.sha256, dict(self.custom) | dict(extra))

    def to_target_file(self) -> TargetFile:
        fields = {"custom": dict(self.custom)} if self.custom else None
        return TargetFile(self.length, {HASH_ALGORITHM: self.sha256}, self.name, fields)


class TargetSource(Protocol[U_contra]):
    """The publishing domain, as signing sees it: which targets an app should have.

    A *unit* is what that domain releases as a whole (a package version, say): all the
    targets of one unit are released to, and signed with, the same channels. Signing
    never looks inside a unit; it only hands it back to the source.
    """

    async def unit_targets(self, unit: U_contra) -> list[TargetSpec]:
        """Every target of one unit."""
        ...

    async def missing_targets(self, app_name: str, present: Set[str]) -> list[TargetSpec]:
        """Every target ``app_name`` should have whose name is not in ``present``."""
        ...

    async def holds_blob(self, app: App, sha256: str) -> bool:
        """True if ``sha256`` is the content of one of the app's targets (may be served)."""
        ...
