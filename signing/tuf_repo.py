"""One TUF repository per app: targets, snapshot and timestamp signed with online keys.

Every change reloads the latest state, applies itself, signs new versions and commits
them in one atomic write. The timestamp is loaded first and every change writes
timestamp ``latest + 1``, so the timestamp version is a compare-and-swap token: if two
publishers race, the store rejects the second commit (``VersionConflict``) and that
publisher reapplies its change on top of the winner's. Versions therefore only ever
increase, across processes and restarts, and no version is ever signed twice.

Root changes (online key rotation, root key rotation, renewal) need the root private
keys; everything else needs only the online keys.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Snapshot, TargetFile, Targets, Timestamp

from mpaas.signing.errors import (
    InvalidMetadata,
    InvalidTarget,
    MissingSigner,
    RepositoryExists,
    VersionConflict,
)
from mpaas.signing.keys import check_app_name
from mpaas.signing.signer import KeyRing, Signer, SignerSource
from mpaas.signing.targets import TargetSpec
from mpaas.signing.tuf_root import (
    DEFAULT_EXPIRIES,
    ONLINE_ROLES,
    ROOT,
    SNAPSHOT,
    TARGETS,
    TIMESTAMP,
    Expiries,
    check_root,
    next_root,
    parse_root,
    set_role_keys,
    sign_with,
    to_bytes,
    utcnow,
)
from mpaas.signing.tuf_state import RepoState, load_state, meta_file
from mpaas.signing.tuf_store import MetadataStore, Write

logger = logging.getLogger(__name__)

_R = TypeVar("_R")


class TufRepository:
    """Signs and publishes the TUF metadata of many apps over one :class:`MetadataStore`.

    Signing runs in a worker thread, so a slow (KMS) signer never blocks the event loop.
    """

    def __init__(
        self,
        store: MetadataStore,
        signers: SignerSource | None = None,
        *,
        expiries: Expiries = DEFAULT_EXPIRIES,
        now: Callable[[], datetime] = utcnow,
        max_attempts: int = 20,
        retry_delay: float = 0.005,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._store = store
        self._keyring = signers if isinstance(signers, KeyRing) else KeyRing(signers)
        self._expiries = expiries
        self._now = now
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay

    # ------------------------------------------------------------------ creation

    async def init_repo(self, app: str, root_md_signed: bytes, online_signers: Iterable[Signer]) -> None:
        """Start an app's repository from its signed version-1 root and its online keys."""
        check_app_name(app)
        root = parse_root(root_md_signed)
        check_root(None, root)
        for signer in online_signers:
            self._keyring.add(app, signer)
        if await self._store.load_latest(app, TIMESTAMP) is not None:
            raise RepositoryExists(f"{app} already has a TUF repository")

        def build() -> list[Write]:
            state = RepoState(
                root=root,
                targets=Metadata(Targets(version=1, expires=self._expires(TARGETS))),
                snapshot=Metadata(Snapshot(version=1, expires=self._expires(SNAPSHOT))),
                timestamp=Metadata(Timestamp(version=1, expires=self._expires(TIMESTAMP))),
            )
            targets_raw = self._sign(app, state.root.signed, state.targets)
            state.snapshot.signed.meta = {"targets.json": meta_file(1, targets_raw)}
            snapshot_raw = self._sign(app, state.root.signed, state.snapshot)
            state.timestamp.signed.snapshot_meta = meta_file(1, snapshot_raw)
            timestamp_raw = self._sign(app, state.root.signed, state.timestamp)
            return [
                (ROOT, 1, to_bytes(root)),
                (TARGETS, 1, targets_raw),
                (SNAPSHOT, 1, snapshot_raw),
                (TIMESTAMP, 1, timestamp_raw),
            ]

        writes = await asyncio.to_thread(build)
        try:
            await self._store.commit(app, writes)
        except VersionConflict:
            raise RepositoryExists(f"{app} already has a TUF repository") from None
        logger.info("tuf repository created", extra={"app": app})

    # ------------------------------------------------------------------ targets

    async def add_targets(self, app: str, targets: Sequence[TargetSpec]) -> int:
        """Add or replace targets; returns the targets version that lists them."""
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise InvalidTarget("a target name appears twice in one change")

        def change(state: RepoState) -> tuple[list[Write], int]:
            current = state.targets.signed
            new = {t.name: t.to_target_file() for t in targets}
            if all(current.targets.get(name) == info for name, info in new.items()):
                return [], current.version
            current.targets.update(new)
            return self._resign(app, state, targets_changed=True), current.version

        return await self._mutate(app, change)

    async def remove_targets(self, app: str, names: Sequence[str]) -> int:
        """Remove targets (unknown names are ignored); returns the resulting targets version."""

        def change(state: RepoState) -> tuple[list[Write], int]:
            current = state.targets.signed
            present = [name for name in names if name in current.targets]
            if not present:
                return [], current.version
            for name in present:
                del current.targets[name]
            return self._resign(app, state, targets_changed=True), current.version

        return await self._mutate(app, change)

    async def list_targets(self, app: str) -> dict[str, TargetFile]:
        state = await self._load(app)
        return dict(state.targets.signed.targets)

    # ------------------------------------------------------------------ freshness

    async def refresh_timestamp(self, app: str) -> int:
        """Re-sign the timestamp with a new version and expiry; returns that version."""

        def change(state: RepoState) -> tuple[list[Write], int]:
            writes = self._resign(app, state, targets_changed=False)
            return writes, state.timestamp.signed.version

        return await self._mutate(app, change)

    async def timestamp_expiring(self, app: str, within: timedelta) -> bool:
        return TIMESTAMP in await self.expiring_roles(app, within)

    async def expiring_roles(self, app: str, within: timedelta) -> list[str]:
        """Roles whose current metadata expires within ``within`` (root included, for alerts)."""
        state = await self._load(app)
        deadline = self._now() + within
        signed = (state.root.signed, state.targets.signed, state.snapshot.signed, state.timestamp.signed)
        return [md.type for md in signed if md.expires <= deadline]

    async def refresh_expiring(self, app: str, within: timedelta) -> list[str]:
        """Re-sign the online roles expiring within ``within``; returns the roles re-signed.

        An expiring root is only logged: renewing it needs the offline root keys
        (:meth:`renew_root`).
        """

        def change(state: RepoState) -> tuple[list[Write], list[str]]:
            deadline = self._now() + within
            if state.root.signed.expires <= deadline:
                logger.warning("tuf root expiring; renew it with the root keys", extra={"app": app})
            targets_due = state.targets.signed.expires <= deadline
            snapshot_due = state.snapshot.signed.expires <= deadline
            if not (targets_due or snapshot_due or state.timestamp.signed.expires <= deadline):
                return [], []
            writes = self._resign(app, state, targets_changed=targets_due, resign_snapshot=snapshot_due)
            return writes, [role for role, _, _ in writes]

        return await self._mutate(app, change)

    # ------------------------------------------------------------------ root changes

    async def rotate_online_key(
        self, app: str, role: str, new_signer: Signer, root_signers: Sequence[Signer]
    ) -> int:
        """Replace the key(s) of an online role by ``new_signer``; returns the new root version.

        Root N+1 is signed by ``root_signers`` (a threshold of the root keys), and the
        role's metadata (with what depends on it) is re-signed with the new key in the
        same commit, so clients move over in one refresh.
        """
        if role not in ONLINE_ROLES:
            raise ValueError(f"{role!r} is not an online role ({', '.join(ONLINE_ROLES)})")
        self._keyring.add(app, new_signer)

        def build(current: Metadata[Root]) -> Metadata[Root]:
            new = next_root(current, self._expires(ROOT))
            set_role_keys(new.signed, role, [new_signer.public_key], threshold=1)
            sign_with(new, root_signers)
            return new

        return await self._change_root(app, build)

    async def rotate_root(
        self,
        app: str,
        old_root_signers: Sequence[Signer],
        new_root_signers: Sequence[Signer],
        threshold: int | None = None,
    ) -> int:
        """Replace the root keys; root N+1 is signed by a threshold of the old and of the new keys.

        ``threshold`` defaults to the current root threshold. Returns the new root version.
        """
        if not new_root_signers:
            raise ValueError("at least one new root key is needed")

        def build(current: Metadata[Root]) -> Metadata[Root]:
            new = next_root(current, self._expires(ROOT))
            wanted = threshold if threshold is not None else current.signed.roles[ROOT].threshold
            try:
                set_role_keys(new.signed, ROOT, [s.public_key for s in new_root_signers], wanted)
            except ValueError as exc:
                raise InvalidMetadata(str(exc)) from None
            sign_with(new, [*old_root_signers, *new_root_signers])
            return new

        return await self._change_root(app, build)

    async def renew_root(self, app: str, root_signers: Sequence[Signer]) -> int:
        """Publish root N+1 with the same keys and a fresh expiry."""

        def build(current: Metadata[Root]) -> Metadata[Root]:
            new = next_root(current, self._expires(ROOT))
            sign_with(new, root_signers)
            return new

        return await self._change_root(app, build)

    async def publish_root(
        self, app: str, root_md_signed: bytes, online_signers: Iterable[Signer] = ()
    ) -> int:
        """Publish a root N+1 signed elsewhere (an offline ceremony); returns its version.

        ``online_signers`` are the online keys that root introduces, if any.
        """
        new_root = parse_root(root_md_signed)
        for signer in online_signers:
            self._keyring.add(app, signer)

        def build(current: Metadata[Root]) -> Metadata[Root]:
            if new_root.signed.version != current.signed.version + 1:
                raise InvalidMetadata(
                    f"expected root v{current.signed.version + 1}, got v{new_root.signed.version}"
                )
            return parse_root(root_md_signed)

        return await self._change_root(app, build)

    async def _change_root(self, app: str, build: Callable[[Metadata[Root]], Metadata[Root]]) -> int:
        def change(state: RepoState) -> tuple[list[Write], int]:
            old = state.root.signed
            new_md = build(state.root)
            check_root(old, new_md)
            new = new_md.signed
            changed = {role for role in ONLINE_ROLES if old.roles[role] != new.roles[role]}
            state.root = new_md
            writes: list[Write] = [(ROOT, new.version, to_bytes(new_md))]
            writes += self._resign(
                app, state, targets_changed=TARGETS in changed, resign_snapshot=SNAPSHOT in changed
            )
            return writes, new.version

        version = await self._mutate(app, change)
        logger.info("tuf root published", extra={"app": app, "root_version": version})
        return version

    # ------------------------------------------------------------------ machinery

    def _expires(self, role: str) -> datetime:
        return self._now() + self._expiries.for_role(role)

    def _sign(self, app: str, root: Root, md: Metadata[Any]) -> bytes:
        """Sign with every available key of the role; fail unless the threshold is met."""
        role = md.signed.type
        md.signatures.clear()
        signers = [s for keyid in root.roles[role].keyids if (s := self._keyring.get(app, keyid)) is not None]
        sign_with(md, signers)
        try:
            root.verify_delegate(role, md.signed_bytes, md.signatures)
        except UnsignedMetadataError:
            raise MissingSigner(
                f"{app}: cannot sign {role}: {len(signers)} usable key(s), "
                f"root v{root.version} requires {root.roles[role].threshold}"
            ) from None
        return to_bytes(md)

    def _resign(
        self, app: str, state: RepoState, *, targets_changed: bool, resign_snapshot: bool = False
    ) -> list[Write]:
        """New versions of targets (if changed), snapshot (if needed) and always timestamp."""
        root = state.root.signed
        writes: list[Write] = []
        if targets_changed:
            targets = state.targets.signed
            targets.version += 1
            targets.expires = self._expires(TARGETS)
            raw = self._sign(app, root, state.targets)
            writes.append((TARGETS, targets.version, raw))
            state.snapshot.signed.meta = {"targets.json": meta_file(targets.version, raw)}
        if targets_changed or resign_snapshot:
            snapshot = state.snapshot.signed
            snapshot.version += 1
            snapshot.expires = self._expires(SNAPSHOT)
            raw = self._sign(app, root, state.snapshot)
            writes.append((SNAPSHOT, snapshot.version, raw))
            state.timestamp.signed.snapshot_meta = meta_file(snapshot.version, raw)
        timestamp = state.timestamp.signed
        timestamp.version += 1
        timestamp.expires = self._expires(TIMESTAMP)
        writes.append((TIMESTAMP, timestamp.version, self._sign(app, root, state.timestamp)))
        return writes

    async def _load(self, app: str) -> RepoState:
        return await load_state(self._store, app)

    async def _mutate(self, app: str, change: Callable[[RepoState], tuple[list[Write], _R]]) -> _R:
        for attempt in range(self._max_attempts):
            state = await self._load(app)
            writes, result = await asyncio.to_thread(change, state)
            if not writes:
                return result
            try:
                await self._store.commit(app, writes)
            except VersionConflict:
                logger.debug("tuf version conflict, retrying", extra={"app": app, "attempt": attempt})
                await asyncio.sleep(random.uniform(0, self._retry_delay * 2 ** min(attempt, 6)))
                continue
            logger.info(
                "tuf metadata committed",
                extra={"app": app, "files": [f"{v}.{r}.json" for r, v, _ in writes]},
            )
            return result
        raise VersionConflict(f"{app}: metadata kept changing; gave up after {self._max_attempts} attempts")
