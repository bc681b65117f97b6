"""Key ceremonies (``mpaas keys ...``): create, rotate and list an app's signing keys.

They run from the operator's machine against the server's database and key directory.
The root private key is only ever handed in by the operator for a ceremony; the
running server never needs it. Every ceremony is audited, naming only public key ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import select
from tuf.api.metadata import Metadata, Root, Timestamp

from mpaas.errors import NotFound
from mpaas.identity.audit import Actor, record
from mpaas.identity.models import App
from mpaas.signing import expo
from mpaas.signing.config import SigningConfig
from mpaas.signing.db_store import DbMetadataStore
from mpaas.signing.errors import RepositoryExists, RepositoryNotFound
from mpaas.signing.expo_keys import ExpoKeys
from mpaas.signing.keys import (
    DirectoryKeyring,
    KeyType,
    app_key_dir,
    generate_app_keys,
    generate_online_key,
    generate_signer,
    online_key_path,
    write_private_key,
)
from mpaas.signing.signer import Signer
from mpaas.signing.tuf_repo import TufRepository
from mpaas.signing.tuf_root import ONLINE_ROLES, ROOT, TIMESTAMP, utcnow
from mpaas.storage.db import Database

CLI_ACTOR = Actor("cli:keys")


class KeyCeremonies:
    """The keys of every app: TUF repositories in the database, key files on disk."""

    def __init__(self, db: Database, config: SigningConfig, *, now: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.config = config
        self.store = DbMetadataStore(db)
        self.repo = TufRepository(
            self.store, DirectoryKeyring(config.keys_dir), expiries=config.expiries, now=now
        )
        self.expo = ExpoKeys(config.keys_dir, now=now)
        self._now = now
        self._with_repo: set[str] = set()

    async def has_repository(self, app_name: str) -> bool:
        if app_name in self._with_repo:
            return True
        if await self.store.get(app_name, "1.root.json") is None:
            return False
        self._with_repo.add(app_name)  # a repository, once created, never goes away
        return True

    def online_dir(self, app_name: str) -> Path:
        return app_key_dir(self.config.keys_dir, app_name)

    # ------------------------------------------------------------------ TUF

    async def init_app(
        self,
        app_name: str,
        root_key_paths: Sequence[Path],
        *,
        key_type: KeyType | None = None,
        root_threshold: int | None = None,
        root_passphrase: bytes | None = None,
        actor: Actor = CLI_ACTOR,
    ) -> bytes:
        """Create an app's keys and its repository; returns the signed ``1.root.json``.

        Nothing is left on disk if the repository cannot be created.
        """
        await self._require_app(app_name)
        if await self.has_repository(app_name):
            raise RepositoryExists(f"{app_name} already has TUF keys; use `mpaas keys rotate`")
        keys = await asyncio.to_thread(
            generate_app_keys,
            app_name,
            list(root_key_paths),
            self.online_dir(app_name),
            key_type or self.config.key_type,
            root_threshold or self.config.root_threshold,
            self.config.expiries,
            root_passphrase=root_passphrase,
            now=self._now,
        )
        try:
            await self.repo.init_repo(app_name, keys.root_metadata, keys.online_signers.values())
        except BaseException:
            for path in (*keys.root_key_paths, *keys.online_key_paths.values()):
                path.unlink(missing_ok=True)
            raise
        root = Metadata[Root].from_bytes(keys.root_metadata).signed
        await self._audit(
            actor, "keys.init", app_name, {"keyids": {r: root.roles[r].keyids for r in root.roles}}
        )
        return keys.root_metadata

    async def rotate_online_key(
        self,
        app_name: str,
        role: str,
        root_signers: Sequence[Signer],
        *,
        key_type: KeyType | None = None,
        actor: Actor = CLI_ACTOR,
    ) -> int:
        """Replace an online role's key by a new one (0600 in the key directory); returns root N+1."""
        if role not in ONLINE_ROLES:
            raise ValueError(f"{role!r} is not an online role ({', '.join(ONLINE_ROLES)})")
        await self._require_repository(app_name)
        new = await asyncio.to_thread(
            generate_online_key, self.online_dir(app_name), role, key_type or self.config.key_type
        )
        try:
            version = await self.repo.rotate_online_key(app_name, role, new, root_signers)
        except BaseException:
            online_key_path(self.online_dir(app_name), role, new.public_key.keyid).unlink(missing_ok=True)
            raise
        await self._audit(
            actor, "keys.rotate", app_name, {"role": role, "keyid": new.public_key.keyid, "root": version}
        )
        return version

    async def rotate_root(
        self,
        app_name: str,
        old_root_signers: Sequence[Signer],
        new_root_key_paths: Sequence[Path],
        *,
        key_type: KeyType | None = None,
        threshold: int | None = None,
        root_passphrase: bytes | None = None,
        actor: Actor = CLI_ACTOR,
    ) -> int:
        """Replace the root keys by new ones written to the operator's paths; returns root N+1."""
        await self._require_repository(app_name)
        if not new_root_key_paths:
            raise ValueError("at least one new root key path is needed")
        signers = [generate_signer(key_type or self.config.key_type) for _ in new_root_key_paths]
        written: list[Path] = []
        try:
            for path, signer in zip(new_root_key_paths, signers, strict=True):
                await asyncio.to_thread(write_private_key, path, signer, passphrase=root_passphrase)
                written.append(path)
            version = await self.repo.rotate_root(app_name, old_root_signers, signers, threshold)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        keyids = [s.public_key.keyid for s in signers]
        await self._audit(actor, "keys.rotate", app_name, {"role": ROOT, "keyids": keyids, "root": version})
        return version

    async def key_report(self, app_name: str) -> dict[str, Any]:
        """What ``mpaas keys list`` shows: roles, key ids, thresholds, expiries, files present."""
        root_raw = await self.store.load_latest(app_name, ROOT)
        timestamp_raw = await self.store.load_latest(app_name, TIMESTAMP)
        if root_raw is None or timestamp_raw is None:
            raise RepositoryNotFound(f"{app_name} has no TUF repository (run `mpaas keys init`)")
        root = Metadata[Root].from_bytes(root_raw).signed
        timestamp = Metadata[Timestamp].from_bytes(timestamp_raw).signed
        online = self.online_dir(app_name)
        roles = []
        for name, role in root.roles.items():
            keys = []
            for keyid in role.keyids:
                entry: dict[str, Any] = {"keyid": keyid, "scheme": root.keys[keyid].scheme}
                if name in ONLINE_ROLES:
                    entry["on_disk"] = online_key_path(online, name, keyid).exists()
                keys.append(entry)
            roles.append({"role": name, "threshold": role.threshold, "keys": keys})
        return {
            "app": app_name,
            "root_version": root.version,
            "root_expires": root.expires,
            "timestamp_version": timestamp.version,
            "timestamp_expires": timestamp.expires,
            "roles": roles,
            "expo_certificate": self.expo.report(app_name),
        }

    # ------------------------------------------------------------------ Expo code signing

    async def create_expo_certificate(
        self, app_name: str, *, valid_days: int = expo.DEFAULT_VALID_DAYS, actor: Actor = CLI_ACTOR
    ) -> bytes:
        """Create the app's Expo key (0600) and certificate; returns the certificate PEM."""
        await self._require_app(app_name)
        cert = await self.expo.create(app_name, valid_days)
        report = self.expo.report(app_name) or {}
        await self._audit(
            actor, "keys.expo_cert", app_name, {"fingerprint": report.get("sha256_fingerprint")}
        )
        return cert

    async def import_expo_certificate(
        self, app_name: str, key_pem: bytes, cert_pem: bytes, *, actor: Actor = CLI_ACTOR
    ) -> bytes:
        await self._require_app(app_name)
        await self.expo.import_pair(app_name, key_pem, cert_pem)
        await self._audit(actor, "keys.expo_cert", app_name, {"imported": True})
        return cert_pem

    # ------------------------------------------------------------------ helpers

    async def _require_app(self, app_name: str) -> None:
        async with self.db.session() as s:
            if (await s.exec(select(App.id).where(App.name == app_name))).first() is None:
                raise NotFound(f"app {app_name!r} not found", code="app_not_found")

    async def _require_repository(self, app_name: str) -> None:
        if not await self.has_repository(app_name):
            raise RepositoryNotFound(f"{app_name} has no TUF repository (run `mpaas keys init`)")

    async def _audit(self, actor: Actor, action: str, app_name: str, detail: dict[str, Any]) -> None:
        # The metadata commit is its own transaction (the store's compare-and-swap), so the
        # audit entry follows it; it names only public key ids.
        async with self.db.write() as s:
            record(s, actor, action, f"tuf:{app_name}", app=app_name, detail=detail)
