"""Shared TUF vocabulary: role names, expiry policy, signing, and root metadata rules.

Everything is built with python-tuf's Metadata API; the canonical JSON that signatures
cover is python-tuf's, never ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from securesystemslib.signer import Key
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from mpaas.signing.errors import InvalidMetadata
from mpaas.signing.signer import Signer

ROOT = "root"
TARGETS = "targets"
SNAPSHOT = "snapshot"
TIMESTAMP = "timestamp"
ONLINE_ROLES: tuple[str, ...] = (TARGETS, SNAPSHOT, TIMESTAMP)
TOP_LEVEL_ROLES: tuple[str, ...] = (ROOT, *ONLINE_ROLES)

SERIALIZER = JSONSerializer(compact=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Expiries:
    """How long each role's metadata stays valid after it is signed."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=90)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        for role in TOP_LEVEL_ROLES:
            if self.for_role(role) <= timedelta(0):
                raise ValueError(f"{role} expiry must be positive")

    def for_role(self, role: str) -> timedelta:
        if role not in TOP_LEVEL_ROLES:
            raise ValueError(f"unknown role {role!r}")
        value: timedelta = getattr(self, role)
        return value


DEFAULT_EXPIRIES = Expiries()


def to_bytes(md: Metadata[Any]) -> bytes:
    return md.to_bytes(SERIALIZER)


def sign_with(md: Metadata[Any], signers: Iterable[Signer]) -> None:
    """Add one signature per signer over the canonical ``signed`` bytes."""
    payload = md.signed_bytes
    for signer in signers:
        signature = signer.sign(payload)
        md.signatures[signature.keyid] = signature


def parse_root(raw: bytes) -> Metadata[Root]:
    try:
        md = Metadata[Root].from_bytes(raw)
    except DeserializationError as exc:
        raise InvalidMetadata(f"not TUF metadata: {exc}") from None
    if not isinstance(md.signed, Root):
        raise InvalidMetadata(f"expected root metadata, got {md.signed.type}")
    return md


def build_root(
    root_keys: Sequence[Key],
    online_keys: Mapping[str, Sequence[Key]],
    *,
    expires: datetime,
    root_threshold: int = 1,
) -> Metadata[Root]:
    """Unsigned version-1 root with consistent snapshots and threshold-1 online roles."""
    root = Root(version=1, expires=expires, consistent_snapshot=True)
    set_role_keys(root, ROOT, root_keys, root_threshold)
    for role in ONLINE_ROLES:
        set_role_keys(root, role, online_keys[role], 1)
    return Metadata(root)


def set_role_keys(root: Root, role: str, keys: Sequence[Key], threshold: int | None = None) -> None:
    """Replace the keys of ``role`` (revoking the old ones) and optionally its threshold."""
    if not keys:
        raise ValueError(f"{role} needs at least one key")
    for keyid in list(root.roles[role].keyids):
        root.revoke_key(keyid, role)
    for key in keys:
        root.add_key(key, role)
    if threshold is not None:
        root.roles[role].threshold = threshold
    if not 1 <= root.roles[role].threshold <= len(root.roles[role].keyids):
        raise ValueError(f"{role} threshold must be between 1 and its number of keys")


def next_root(current: Metadata[Root], expires: datetime) -> Metadata[Root]:
    """An unsigned copy of ``current`` with version + 1 and a new expiry."""
    new = parse_root(to_bytes(current))
    new.signatures.clear()
    new.signed.version = current.signed.version + 1
    new.signed.expires = expires
    return new


def check_root(previous: Root | None, new: Metadata[Root]) -> None:
    """Enforce what clients will: sequential version, thresholds of old and new keys.

    ``previous=None`` checks a first root, which must be signed by its own threshold.
    """
    root = new.signed
    if not root.consistent_snapshot:
        raise InvalidMetadata("root must enable consistent snapshots")
    for role in TOP_LEVEL_ROLES:
        declared = root.roles[role]
        if not 1 <= declared.threshold <= len(declared.keyids):
            raise InvalidMetadata(f"root v{root.version}: {role} threshold cannot be met by its keys")
    if previous is None and root.version != 1:
        raise InvalidMetadata(f"a new repository starts at root v1, not v{root.version}")
    try:
        result = root.get_root_verification_result(previous, new.signed_bytes, new.signatures)
    except ValueError as exc:
        raise InvalidMetadata(str(exc)) from None
    if not result.verified:
        raise InvalidMetadata(
            f"root v{root.version} is not signed by a threshold of "
            + ("its own keys" if previous is None else f"root v{previous.version}'s keys and its own keys")
        )
