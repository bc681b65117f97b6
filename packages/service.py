"""Publishing packages: intake, content-addressed storage, deltas, one commit.

The pipeline for one publish:

1. validate the metadata for the kind (entry page, vhost, binary range...);
2. unpack the completed upload into a private temp directory (hostile-archive
   rules in :mod:`mpaas.packages.intake.unpack`), off the event loop;
3. store each file by sha256, a deterministic zip of the tree, and the manifest;
4. build a patch against each of the last N versions of the same (app, kind, id),
   keeping it only when it is smaller than ``delta_max_share`` of the full zip;
5. insert the package, its files and its deltas in one transaction, under the
   ``blobs`` maintenance lock, after re-checking that every reused blob still exists.

Nothing is visible before step 5 commits. Blobs stored by a publish that dies
before its commit are unreferenced, invisible, and removed by ``mpaas gc``. After a
commit, publish hooks run (the signing domain adds targets there).

The request and its validation are in :mod:`mpaas.packages.spec`; steps 3 and 5 in
:mod:`mpaas.packages.store`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from mpaas.identity.audit import Actor
from mpaas.identity.models import App
from mpaas.packages.deltas import builder as delta
from mpaas.packages.errors import (
    InvalidPackageMeta,
    PackageNotFound,
    PackageVersionExists,
    UnsafeArchive,
    UnsupportedArchive,
)
from mpaas.packages.intake import unpack as intake
from mpaas.packages.intake.uploads import Uploads
from mpaas.packages.manifest import FileEntry, Manifest
from mpaas.packages.models import Package, PackageDelta, PackageFile
from mpaas.packages.spec import PublishSpec
from mpaas.packages.store import Built, Progress, insert_package, store_tree
from mpaas.storage.blobs import BlobStore
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.packages")

PublishHook = Callable[[App, Package, list[PackageDelta]], Awaitable[None]]


@dataclass
class PublishResult:
    package: Package
    deltas: list[PackageDelta]
    created: bool
    #: Things the publisher should know, e.g. a version lower than the latest one.
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PackageLimits:
    intake: intake.IntakeLimits = field(default_factory=intake.IntakeLimits)
    delta_bases: int = 5
    delta_max_share: float = 0.5


class PackageService:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        uploads: Uploads,
        tmp_root: Path,
        limits: PackageLimits = PackageLimits(),
        concurrency: int = 2,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.uploads = uploads
        self.tmp_root = tmp_root
        self.limits = limits
        self.hooks: list[PublishHook] = []
        self._heavy = asyncio.Semaphore(concurrency)

    # -- publish ---------------------------------------------------------------------

    async def publish(
        self, app: App, actor: Actor, upload_id: str, spec: PublishSpec, progress: Progress | None = None
    ) -> PublishResult:
        meta = spec.validate()
        report = progress or (lambda stage, done, total: None)
        upload, source = await self.uploads.complete_file(app, upload_id)
        existing = await self._find(app, spec.kind, spec.package_id, spec.version)
        async with self._heavy:
            await asyncio.to_thread(self.tmp_root.mkdir, parents=True, exist_ok=True)
            work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="publish-", dir=self.tmp_root))
            try:
                tree = work / "tree"
                tree.mkdir()
                report("unpack", 0, 1)
                try:
                    manifest = await asyncio.to_thread(intake.unpack, source, tree, self.limits.intake)
                except (UnsafeArchive, UnsupportedArchive) as exc:
                    await self.uploads.refuse(app, actor, upload.id, exc)  # it can never publish
                    raise
                report("unpack", 1, 1)
                self._check_entry(spec, meta, manifest)
                spec.check_semver()
                if existing is not None:
                    if existing.package_hash == manifest.package_hash:
                        await self.uploads.discard(upload_id)
                        return PublishResult(existing, await self._deltas_of(existing), created=False)
                    raise PackageVersionExists(self._exists_message(spec))
                built = await store_tree(self.blobs, tree, manifest, work, report)
                await self._build_deltas(app, spec, tree, manifest, built, work, report)
                result = await self._commit(app, actor, spec, meta, built)
                result.warnings = await self._order_warnings(app, spec, result.package)
            finally:
                await asyncio.to_thread(shutil.rmtree, work, ignore_errors=True)
        await self.uploads.discard(upload.id)
        if result.created:
            for hook in self.hooks:
                await hook(app, result.package, result.deltas)
        return result

    async def _order_warnings(self, app: App, spec: PublishSpec, new: Package) -> list[str]:
        """A warning when the new version sorts below the latest semver version of its lineage."""
        version = spec.semver()
        if version is None:
            return []
        async with self.db.session() as s:
            rows = await s.exec(
                select(Package.version).where(
                    Package.app_id == app.id,
                    Package.kind == spec.kind,
                    Package.package_id == spec.package_id,
                    Package.id != new.id,
                )
            )
            raw = list(rows.all())
        others = [
            (v, r) for r in raw if (v := PublishSpec(spec.kind, spec.package_id, r).semver()) is not None
        ]
        if not others:
            return []
        latest, latest_text = max(others, key=lambda pair: pair[0])
        if not version < latest:
            return []
        return [
            f"{spec.version} is lower than {latest_text}, the latest version of {spec.kind} "
            f"{spec.package_id}; releasing it moves devices backwards"
        ]

    @staticmethod
    def _exists_message(spec: PublishSpec) -> str:
        return (
            f"{spec.kind} {spec.package_id} {spec.version} is already published with different content; "
            "publish a new version"
        )

    @staticmethod
    def _check_entry(spec: PublishSpec, meta: dict[str, Any], manifest: Manifest) -> None:
        if not manifest.files:
            raise InvalidPackageMeta("the package holds no files")
        entry = meta.get("entry")
        if entry and spec.kind != "hotfix" and entry not in manifest.by_path():
            raise InvalidPackageMeta(f"entry page {entry!r} is not a file in the package")

    async def _build_deltas(
        self,
        app: App,
        spec: PublishSpec,
        tree: Path,
        manifest: Manifest,
        built: Built,
        work: Path,
        report: Progress,
    ) -> None:
        bases = await self._lineage(app, spec.kind, spec.package_id, limit=self.limits.delta_bases)
        bases = [b for b in bases if b.package_hash != manifest.package_hash]
        limit = built.archive[1] * self.limits.delta_max_share
        for i, base in enumerate(bases):
            report("delta", i, len(bases))
            old_tree = work / f"base-{base.id}"
            old_manifest = await self.materialize(base, old_tree)
            out = work / f"delta-{base.id}.patch"
            info = await asyncio.to_thread(delta.build_patch, old_tree, old_manifest, tree, manifest, out)
            await asyncio.to_thread(shutil.rmtree, old_tree, ignore_errors=True)
            if info.size >= limit:
                log.info(
                    "delta not kept", extra={"from": base.version, "size": info.size, "limit": int(limit)}
                )
                continue
            ref = await self.blobs.put_file(out, sha256=info.sha256)
            assert base.id is not None
            built.deltas.append((base.id, ref.sha256, ref.size, info.stats.to_json()))
            built.reused.add(ref.sha256)
        report("delta", len(bases), len(bases))

    async def _commit(
        self, app: App, actor: Actor, spec: PublishSpec, meta: dict[str, Any], built: Built
    ) -> PublishResult:
        try:
            pkg, deltas = await insert_package(self.db, self.blobs, app, actor, spec, meta, built)
        except IntegrityError:
            # Another process published the same identity first.
            other = await self._find(app, spec.kind, spec.package_id, spec.version)
            if other is not None and other.package_hash == built.manifest.package_hash:
                return PublishResult(other, await self._deltas_of(other), created=False)
            raise PackageVersionExists(self._exists_message(spec)) from None
        return PublishResult(pkg, deltas, created=True)

    # -- queries -----------------------------------------------------------------------

    async def _find(self, app: App, kind: str, package_id: str, version: str) -> Package | None:
        async with self.db.session() as s:
            return (
                await s.exec(
                    select(Package).where(
                        Package.app_id == app.id,
                        Package.kind == kind,
                        Package.package_id == package_id,
                        Package.version == version,
                    )
                )
            ).first()

    async def _lineage(self, app: App, kind: str, package_id: str, *, limit: int) -> list[Package]:
        async with self.db.session() as s:
            rows = await s.exec(
                select(Package)
                .where(Package.app_id == app.id, Package.kind == kind, Package.package_id == package_id)
                .order_by(col(Package.id).desc())
                .limit(limit)
            )
            return list(rows.all())

    async def _deltas_of(self, pkg: Package) -> list[PackageDelta]:
        async with self.db.session() as s:
            return list((await s.exec(select(PackageDelta).where(PackageDelta.to_pk == pkg.id))).all())

    async def get(self, app: App, kind: str | None, package_id: str, version: str) -> Package:
        async with self.db.session() as s:
            query = select(Package).where(
                Package.app_id == app.id, Package.package_id == package_id, Package.version == version
            )
            if kind is not None:
                query = query.where(Package.kind == kind)
            rows = list((await s.exec(query)).all())
        if not rows:
            what = f"{kind + ' ' if kind else ''}{package_id} {version}"
            raise PackageNotFound(f"package {what} not found in app {app.name!r}")
        if len(rows) > 1:
            kinds = ", ".join(sorted(r.kind for r in rows))
            raise InvalidPackageMeta(f"{package_id} {version} exists as several kinds ({kinds}); pass --kind")
        return rows[0]

    async def list_packages(
        self,
        app: App,
        *,
        kind: str | None = None,
        package_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Package], int]:
        query = select(Package).where(Package.app_id == app.id)
        if kind is not None:
            query = query.where(Package.kind == kind)
        if package_id is not None:
            query = query.where(Package.package_id == package_id)
        count = select(func.count()).select_from(query.subquery())
        async with self.db.session() as s:
            total = (await s.exec(count)).one()
            rows = await s.exec(query.order_by(col(Package.id).desc()).limit(limit).offset(offset))
            return list(rows.all()), int(total)

    async def deltas(self, pkg: Package) -> list[tuple[PackageDelta, Package]]:
        async with self.db.session() as s:
            rows = await s.exec(
                select(PackageDelta, Package)
                .join(Package, col(Package.id) == col(PackageDelta.from_pk))
                .where(PackageDelta.to_pk == pkg.id)
                .order_by(col(Package.id).desc())
            )
            return [(d, p) for d, p in rows.all()]

    async def delta_from(self, pkg: Package, base_version: str) -> tuple[PackageDelta, Package] | None:
        """The stored patch that turns ``base_version`` into ``pkg``, if one was kept."""
        for delta_row, base in await self.deltas(pkg):
            if base.version == base_version:
                return delta_row, base
        return None

    async def manifest(self, pkg: Package) -> Manifest:
        async with self.db.session() as s:
            rows = await s.exec(select(PackageFile).where(PackageFile.package_pk == pkg.id))
            return Manifest(FileEntry(f.path, f.size, f.sha256) for f in rows.all())

    async def materialize(self, pkg: Package, dest: Path) -> Manifest:
        """Rebuild a package's tree from its file blobs (verifying each digest)."""
        manifest = await self.manifest(pkg)
        for entry in manifest.files:
            target = dest / entry.path
            await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
            await self.blobs.get_to_file(entry.sha256, target)
        return manifest

    @staticmethod
    def referenced_query() -> Sequence[Any]:
        """Queries yielding every blob digest this domain references (for gc)."""
        return (
            select(PackageFile.sha256),
            select(Package.archive_sha256),
            select(Package.manifest_sha256),
            select(PackageDelta.patch_sha256),
        )


def package_dict(pkg: Package, app_name: str) -> dict[str, Any]:
    return {
        "app": app_name,
        "kind": pkg.kind,
        "id": pkg.package_id,
        "version": pkg.version,
        "package_hash": pkg.package_hash,
        "codepush_hash": pkg.codepush_hash,
        "archive_sha256": pkg.archive_sha256,
        "size": pkg.archive_size,
        "total_size": pkg.total_size,
        "file_count": pkg.file_count,
        "meta": pkg.meta,
        "created_by": pkg.created_by,
        "created_at": pkg.created_at,
    }


def delta_dict(d: PackageDelta, base: Package) -> dict[str, Any]:
    return {
        "from_version": base.version,
        "from_package_hash": base.package_hash,
        "patch_sha256": d.patch_sha256,
        "size": d.patch_size,
        "stats": d.stats,
    }
