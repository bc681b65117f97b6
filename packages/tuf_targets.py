"""The packages domain as the signing domain's target source (the adapter on our side).

Signing signs what it is handed and knows nothing of packages. Here each package
version becomes its TUF targets, named as :mod:`mpaas.packages.targets` says: the full
zip, the manifest and each delta into it, with the package's identity in signed custom
fields. ``mpaas/app.py`` passes :class:`PackageTargets` into the signing service and
adds :func:`publish_hook` to the package service's publish hooks.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from typing import Any, Literal

from sqlalchemy import or_
from sqlmodel import col, select

from mpaas.identity.models import App
from mpaas.packages.models import Package, PackageDelta
from mpaas.packages.service import PublishHook
from mpaas.packages.targets import delta_target, full_target, manifest_target
from mpaas.signing.service import SigningService
from mpaas.signing.targets import TargetSpec
from mpaas.storage.blobs import BlobStore
from mpaas.storage.db import Database

Artifact = Literal["full", "manifest", "delta"]


class PackageTargets:
    """A :class:`~mpaas.signing.targets.TargetSource` whose release units are package versions."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    async def package_targets(
        self, package: Package, bases: dict[int, Package], deltas: Sequence[PackageDelta]
    ) -> list[TargetSpec]:
        """The targets of one package version: full zip, manifest and each delta into it.

        ``bases`` maps each delta's ``from_pk`` to its base package.
        """

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

    async def published_targets(self, package: Package, deltas: Sequence[PackageDelta]) -> list[TargetSpec]:
        """The targets of a package version just published with ``deltas``."""
        return await self.package_targets(package, await self._bases(deltas), deltas)

    # ------------------------------------------------------------------ TargetSource

    async def unit_targets(self, unit: Package) -> list[TargetSpec]:
        async with self.db.session() as s:
            deltas = list((await s.exec(select(PackageDelta).where(PackageDelta.to_pk == unit.id))).all())
        return await self.published_targets(unit, deltas)

    async def missing_targets(self, app_name: str, present: Set[str]) -> list[TargetSpec]:
        async with self.db.session() as s:
            app = (await s.exec(select(App).where(App.name == app_name))).first()
            if app is None:
                return []
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
        for pk, pkg in bases.items():
            into = by_target.get(pk, [])
            names = {full_target(pkg), manifest_target(pkg)} | {
                delta_target(pkg, bases[d.from_pk]) for d in into
            }
            if names <= present:
                continue  # skip the manifest size look-up of what is fully signed
            specs = await self.package_targets(pkg, bases, into)
            missing += [spec for spec in specs if spec.name not in present]
        return missing

    async def holds_blob(self, app: App, sha256: str) -> bool:
        """True if ``sha256`` is a package archive, manifest or delta of ``app``."""
        packages = select(Package.id).where(
            Package.app_id == app.id,
            or_(col(Package.archive_sha256) == sha256, col(Package.manifest_sha256) == sha256),
        )
        patches = (
            select(PackageDelta.id)
            .join(Package, col(Package.id) == col(PackageDelta.to_pk))
            .where(Package.app_id == app.id, PackageDelta.patch_sha256 == sha256)
        )
        async with self.db.session() as s:
            found = (await s.exec(packages.limit(1))).first() or (await s.exec(patches.limit(1))).first()
        return found is not None

    async def _bases(self, deltas: Sequence[PackageDelta]) -> dict[int, Package]:
        ids = sorted({d.from_pk for d in deltas})
        if not ids:
            return {}
        async with self.db.session() as s:
            rows = (await s.exec(select(Package).where(col(Package.id).in_(ids)))).all()
        return {p.id: p for p in rows if p.id is not None}


def publish_hook(signing: SigningService[Package], targets: PackageTargets) -> PublishHook:
    """A publish hook of :class:`~mpaas.packages.service.PackageService` that signs the new targets.

    It never fails the publish: signing logs a failure and its reconciler retries.
    """

    async def sign(app: App, package: Package, deltas: list[PackageDelta]) -> None:
        await signing.sign_published(
            app.name, lambda: targets.published_targets(package, deltas), label=full_target(package)
        )

    return sign
