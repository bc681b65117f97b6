"""The signing service: wires the TUF core to the database, the blob store and packages.

* Every package version becomes TUF targets (full zip, manifest, each delta) through a
  publish hook; a reconciler adds whatever a crash between the package commit and the
  hook left out, at start-up and on every maintenance run.
* A maintenance loop re-signs metadata before it expires. Several processes may run it
  at once: the store's unique (app, role, version) constraint lets exactly one win each
  version, and the others reload and find nothing left to do.
* Key ceremonies (``mpaas keys ...``) run here too, from the operator's machine, against
  the same database and key directory. The root private key is only ever handed in by
  the operator for a ceremony; the running server never needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import or_
from sqlmodel import col, select
from tuf.api.metadata import Metadata, Root, Timestamp

from mpaas.errors import NotFound
from mpaas.identity.audit import Actor, record
from mpaas.identity.models import App
from mpaas.packages.models import Package, PackageDelta
from mpaas.packages.targets import delta_target, full_target, manifest_target
from mpaas.settings import Settings
from mpaas.signing import expo
from mpaas.signing.db_store import DbMetadataStore
from mpaas.signing.errors import KeyFileError, RepositoryExists, RepositoryNotFound
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
from mpaas.signing.tuf_repo import TargetSpec, TufRepository
from mpaas.signing.tuf_root import DEFAULT_EXPIRIES, ONLINE_ROLES, ROOT, TIMESTAMP, Expiries, utcnow
from mpaas.storage.blobs import BlobStore
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.signing")

CHANNELS_FIELD = "channels"
EXPO_KEY_FILE = "expo-signing.key.pem"
EXPO_CERT_FILE = "expo-signing.cert.pem"
_TARGET_FILE = re.compile(r"(?P<sha256>[0-9a-f]{64})\.(?P<basename>[^/]+)")

Artifact = Literal["full", "manifest", "delta"]


@dataclass(frozen=True)
class SigningConfig:
    """What the service takes from :class:`~mpaas.settings.Settings`."""

    keys_dir: Path
    key_type: KeyType = "ecdsa"
    root_threshold: int = 1
    expiries: Expiries = DEFAULT_EXPIRIES
    refresh_interval: float = 600.0
    refresh_within: timedelta = timedelta(hours=12)

    @classmethod
    def from_settings(cls, s: Settings) -> SigningConfig:
        key_type: KeyType = "ed25519" if s.tuf_key_type == "ed25519" else "ecdsa"
        return cls(
            keys_dir=s.keys_dir,
            key_type=key_type,
            root_threshold=s.tuf_root_threshold,
            expiries=Expiries(
                root=timedelta(days=s.tuf_root_expiry_days),
                targets=timedelta(days=s.tuf_targets_expiry_days),
                snapshot=timedelta(days=s.tuf_snapshot_expiry_days),
                timestamp=timedelta(hours=s.tuf_timestamp_expiry_hours),
            ),
            refresh_interval=float(s.tuf_refresh_interval),
            refresh_within=timedelta(hours=s.tuf_refresh_within_hours),
        )


@dataclass(frozen=True)
class TargetBlob:
    """A target file request resolved to the blob that holds its bytes."""

    sha256: str
    basename: str


class SigningService:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        config: SigningConfig,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.config = config
        self.store = DbMetadataStore(db)
        self.repo = TufRepository(
            self.store, DirectoryKeyring(config.keys_dir), expiries=config.expiries, now=now
        )
        self._now = now
        self._with_repo: set[str] = set()
        self._warned_without_keys: set[str] = set()
        self._channel_lock = asyncio.Lock()

    # ------------------------------------------------------------------ repositories

    async def has_repository(self, app_name: str) -> bool:
        if app_name in self._with_repo:
            return True
        if await self.store.get(app_name, "1.root.json") is None:
            return False
        self._with_repo.add(app_name)  # a repository, once created, never goes away
        return True

    async def metadata(self, app_name: str, filename: str) -> bytes | None:
        """A metadata file as clients name it, or None (which clients must see as 404)."""
        return await self.store.get(app_name, filename)

    # ------------------------------------------------------------------ targets

    async def on_publish(self, app: App, package: Package, deltas: list[PackageDelta]) -> None:
        """Publish hook: sign the new package's targets.

        It runs after the package commit, so a failure here must not fail the publish:
        it is logged, and the reconciler adds the targets on its next run.
        """
        if not await self.has_repository(app.name):
            if app.name not in self._warned_without_keys:
                self._warned_without_keys.add(app.name)
                log.warning(
                    "app has no TUF keys; its packages are not signed (run `mpaas keys init`)",
                    extra={"app": app.name},
                )
            return
        try:
            specs = await self.target_specs(package, await self._bases(deltas), deltas)
            await self.repo.add_targets(app.name, specs)
        except Exception:
            log.exception(
                "signing a published package failed; the reconciler will retry",
                extra={"app": app.name, "package": full_target(package)},
            )

    async def add_targets(self, app_name: str, specs: Sequence[TargetSpec]) -> int:
        """Add or replace targets; returns the targets version that lists them."""
        return await self.repo.add_targets(app_name, specs)

    async def set_channels(self, app_name: str, package: Package, channels: Iterable[str]) -> int:
        """Sign the complete set of channels ``package`` is released to, on all its targets.

        The releases domain passes the authoritative set from its own tables, so a
        late or repeated call converges on the right answer.
        """
        wanted = sorted(set(channels))
        specs = await self.target_specs(package, *await self._deltas_into(package))
        return await self.repo.add_targets(
            app_name, [_with_custom(spec, {CHANNELS_FIELD: wanted}) for spec in specs]
        )

    async def set_channel(self, app_name: str, package: Package, channel: str) -> int:
        """Add one channel to those already signed for ``package``.

        A read-modify-write: serialised in this process only. Callers in several
        processes should prefer :meth:`set_channels` with the full set.
        """
        async with self._channel_lock:
            current = (await self.repo.list_targets(app_name)).get(full_target(package))
            have = current.custom.get(CHANNELS_FIELD, []) if current is not None else []
            return await self.set_channels(app_name, package, [*have, channel])

    async def target_specs(
        self, package: Package, bases: dict[int, Package], deltas: Sequence[PackageDelta]
    ) -> list[TargetSpec]:
        """The targets of one package version: full zip, manifest and each delta into it."""

        def custom(artifact: Artifact) -> dict[str, Any]:
            return {
                "kind": package.kind,
                "id": package.package_id,
                "version": package.version,
                "package_hash": package.package_hash,
                "artifact": artifact,
            }

        manifest_size = await self.blobs.size(package.manifest_sha256)
        specs = [
            TargetSpec(full_target(package), package.archive_size, package.archive_sha256, custom("full")),
            TargetSpec(manifest_target(package), manifest_size, package.manifest_sha256, custom("manifest")),
        ]
        for d in deltas:
            base = bases[d.from_pk]
            extra = {"from_version": base.version, "from_package_hash": base.package_hash}
            specs.append(
                TargetSpec(delta_target(package, base), d.patch_size, d.patch_sha256, custom("delta") | extra)
            )
        return specs

    async def reconcile(self, app_name: str) -> int:
        """Add every package, manifest and delta of the app that has no target yet.

        Returns how many targets were added. Existing targets are left alone, so the
        channels the releases domain signed are kept.
        """
        present = set(await self.repo.list_targets(app_name))
        async with self.db.session() as s:
            app = (await s.exec(select(App).where(App.name == app_name))).first()
            if app is None:
                return 0
            packages = {
                p.id: p for p in (await s.exec(select(Package).where(Package.app_id == app.id))).all()
            }
            deltas = (
                await s.exec(select(PackageDelta).where(col(PackageDelta.to_pk).in_(list(packages))))
            ).all()
        by_target: dict[int, list[PackageDelta]] = {}
        for d in deltas:
            by_target.setdefault(d.to_pk, []).append(d)
        bases = {pk: p for pk, p in packages.items() if pk is not None}
        missing: list[TargetSpec] = []
        for pkg in packages.values():
            assert pkg.id is not None
            names = {full_target(pkg), manifest_target(pkg)} | {
                delta_target(pkg, bases[d.from_pk]) for d in by_target.get(pkg.id, [])
            }
            if names <= present:
                continue
            specs = await self.target_specs(pkg, bases, by_target.get(pkg.id, []))
            missing += [spec for spec in specs if spec.name not in present]
        if missing:
            await self.repo.add_targets(app_name, missing)
            log.info("tuf targets reconciled", extra={"app": app_name, "added": len(missing)})
        return len(missing)

    async def resolve_target(self, app: App, path: str) -> TargetBlob:
        """Map ``{dir/}{sha256}.{basename}`` to a blob this app published, or raise NotFound.

        Only blobs that are a package archive, manifest or delta of this app are
        served, so the public route never exposes another app's or a private blob.
        """
        _dirname, _, filename = path.rpartition("/")
        match = _TARGET_FILE.fullmatch(filename)
        if match is None:
            raise NotFound("no such target file", code="target_not_found")
        sha = match["sha256"]
        packages = select(Package.id).where(
            Package.app_id == app.id,
            or_(col(Package.archive_sha256) == sha, col(Package.manifest_sha256) == sha),
        )
        patches = (
            select(PackageDelta.id)
            .join(Package, col(Package.id) == col(PackageDelta.to_pk))
            .where(Package.app_id == app.id, PackageDelta.patch_sha256 == sha)
        )
        async with self.db.session() as s:
            found = (await s.exec(packages.limit(1))).first() or (await s.exec(patches.limit(1))).first()
        if found is None or not await self.has_repository(app.name):
            raise NotFound("no such target file", code="target_not_found")
        return TargetBlob(sha, match["basename"])

    async def _bases(self, deltas: Sequence[PackageDelta]) -> dict[int, Package]:
        ids = sorted({d.from_pk for d in deltas})
        if not ids:
            return {}
        async with self.db.session() as s:
            rows = (await s.exec(select(Package).where(col(Package.id).in_(ids)))).all()
        return {p.id: p for p in rows if p.id is not None}

    async def _deltas_into(self, package: Package) -> tuple[dict[int, Package], list[PackageDelta]]:
        async with self.db.session() as s:
            deltas = list((await s.exec(select(PackageDelta).where(PackageDelta.to_pk == package.id))).all())
        return await self._bases(deltas), deltas

    # ------------------------------------------------------------------ freshness

    async def maintain(self) -> None:
        """One maintenance pass over every app with a repository: re-sign, then reconcile."""
        for app_name in await self.store.apps():
            try:
                resigned = await self.repo.refresh_expiring(app_name, self.config.refresh_within)
                if resigned:
                    log.info("tuf metadata re-signed", extra={"app": app_name, "roles": resigned})
                await self.reconcile(app_name)
            except Exception:
                log.exception("tuf maintenance failed", extra={"app": app_name})

    async def run_maintenance(self) -> None:
        """Maintenance forever, every ``refresh_interval`` seconds (jittered); cancel to stop."""
        interval = self.config.refresh_interval
        while True:
            await self.maintain()
            await asyncio.sleep(interval * random.uniform(0.8, 1.0))

    # ------------------------------------------------------------------ key ceremonies

    def online_dir(self, app_name: str) -> Path:
        return app_key_dir(self.config.keys_dir, app_name)

    async def init_app(
        self,
        app_name: str,
        root_key_paths: Sequence[Path],
        *,
        key_type: KeyType | None = None,
        root_threshold: int | None = None,
        root_passphrase: bytes | None = None,
        actor: Actor = Actor("cli:keys"),
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
        actor: Actor = Actor("cli:keys"),
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
        actor: Actor = Actor("cli:keys"),
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
            "expo_certificate": self._expo_report(app_name),
        }

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

    # ------------------------------------------------------------------ Expo code signing

    def expo_paths(self, app_name: str) -> tuple[Path, Path]:
        directory = self.online_dir(app_name)
        return directory / EXPO_KEY_FILE, directory / EXPO_CERT_FILE

    async def create_expo_certificate(
        self, app_name: str, *, valid_days: int = expo.DEFAULT_VALID_DAYS, actor: Actor = Actor("cli:keys")
    ) -> bytes:
        """Create the app's Expo key (0600) and certificate; returns the certificate PEM."""
        await self._require_app(app_name)
        key_path, cert_path = self.expo_paths(app_name)
        await asyncio.to_thread(
            expo.create_expo_certificate, app_name, key_path, cert_path, valid_days, now=self._now
        )
        report = self._expo_report(app_name) or {}
        await self._audit(
            actor, "keys.expo_cert", app_name, {"fingerprint": report.get("sha256_fingerprint")}
        )
        return await asyncio.to_thread(cert_path.read_bytes)

    async def import_expo_certificate(
        self, app_name: str, key_pem: bytes, cert_pem: bytes, *, actor: Actor = Actor("cli:keys")
    ) -> bytes:
        await self._require_app(app_name)
        key_path, cert_path = self.expo_paths(app_name)
        await asyncio.to_thread(
            expo.import_expo_certificate, key_pem, cert_pem, key_path, cert_path, now=self._now
        )
        await self._audit(actor, "keys.expo_cert", app_name, {"imported": True})
        return cert_pem

    def expo_certificate(self, app_name: str) -> bytes | None:
        """The certificate PEM to embed in the app, or None if the app has none."""
        _key, cert_path = self.expo_paths(app_name)
        try:
            return cert_path.read_bytes()
        except FileNotFoundError:
            return None

    async def sign_expo_part(self, app_name: str, body: bytes) -> str:
        """The ``expo-signature`` header value for one multipart part body."""
        key = await asyncio.to_thread(self._expo_key, app_name)
        return await asyncio.to_thread(expo.sign_expo_part, body, key)

    def _expo_key(self, app_name: str) -> rsa.RSAPrivateKey:
        key_path, _cert = self.expo_paths(app_name)
        if not key_path.exists():
            raise NotFound(
                f"{app_name} has no Expo signing key (run `mpaas keys expo-cert --app {app_name}`)",
                code="expo_signing_key_not_found",
            )
        return expo.load_expo_private_key(key_path)

    def _expo_report(self, app_name: str) -> dict[str, Any] | None:
        pem = self.expo_certificate(app_name)
        if pem is None:
            return None
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise KeyFileError(f"{self.expo_paths(app_name)[1]} is not a PEM certificate") from None
        return {
            "sha256_fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
            "not_after": cert.not_valid_after_utc,
        }


def _with_custom(spec: TargetSpec, extra: dict[str, Any]) -> TargetSpec:
    return TargetSpec(spec.name, spec.length, spec.sha256, dict(spec.custom) | extra)


async def stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
