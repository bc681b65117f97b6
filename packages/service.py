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
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from mpaas.identity.audit import Actor, record
from mpaas.identity.models import App
from mpaas.packages.deltas import builder as delta
from mpaas.packages.errors import InvalidPackageMeta, PackageNotFound, PackageVersionExists
from mpaas.packages.intake import unpack as intake
from mpaas.packages.intake.uploads import Uploads
from mpaas.packages.intake.zipout import write_zip
from mpaas.packages.manifest import FileEntry, Manifest
from mpaas.packages.models import KINDS, Package, PackageDelta, PackageFile
from mpaas.packages.semver import check_range
from mpaas.storage.blobs import BlobStore
from mpaas.storage.db import Database
from mpaas.storage.locks import lock_row

log = logging.getLogger("mpaas.packages")

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")
VHOST_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
PATCH_TYPES = ("dex", "so", "resource", "script")
PLATFORMS = ("ios", "android")

Progress = Callable[[str, int, int], None]
PublishHook = Callable[[App, Package, list[PackageDelta]], Awaitable[None]]


@dataclass(frozen=True)
class PublishSpec:
    kind: str
    package_id: str
    version: str
    description: str = ""
    entry: str | None = None
    vhost: str | None = None
    target_binary_range: str | None = None
    platform: str | None = None
    patch_type: str | None = None

    def validate(self) -> dict[str, Any]:
        """Check the fields for the kind; return the metadata to store."""
        if self.kind not in KINDS:
            raise InvalidPackageMeta(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not ID_RE.match(self.package_id):
            raise InvalidPackageMeta(f"package id {self.package_id!r} must be 1-128 of A-Z a-z 0-9 . _ -")
        if not VERSION_RE.match(self.version):
            raise InvalidPackageMeta(f"version {self.version!r} must be 1-64 of A-Z a-z 0-9 . + _ -")
        if len(self.description) > 4000:
            raise InvalidPackageMeta("description is longer than 4000 characters")
        meta: dict[str, Any] = {"description": self.description}
        if self.kind == "offline":
            meta["entry"] = self.entry or "index.html"
            if self.vhost is not None:
                if not VHOST_RE.match(self.vhost):
                    raise InvalidPackageMeta(f"vhost {self.vhost!r} is not a lowercase host name")
                meta["vhost"] = self.vhost
        elif self.kind == "bundle":
            if self.entry:
                meta["entry"] = self.entry
            if self.target_binary_range:
                meta["target_binary_range"] = check_range(self.target_binary_range)
        else:
            if not self.target_binary_range:
                raise InvalidPackageMeta(
                    "a hotfix needs --target-binary (a version range such as '>=5.2 <6')"
                )
            if self.platform not in PLATFORMS:
                raise InvalidPackageMeta(f"a hotfix needs --platform, one of {', '.join(PLATFORMS)}")
            if self.patch_type not in PATCH_TYPES:
                raise InvalidPackageMeta(f"a hotfix needs --patch-type, one of {', '.join(PATCH_TYPES)}")
            meta |= {
                "target_binary_range": check_range(self.target_binary_range),
                "platform": self.platform,
                "patch_type": self.patch_type,
            }
        return meta


@dataclass
class PublishResult:
    package: Package
    deltas: list[PackageDelta]
    created: bool


@dataclass
class _Built:
    """What the off-loop part of a publish produced, before the commit."""

    manifest: Manifest
    archive: tuple[str, int]
    manifest_blob: str
    deltas: list[tuple[int, str, int, dict[str, Any]]] = field(default_factory=list)
    reused: set[str] = field(default_factory=set)


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
                manifest = await asyncio.to_thread(intake.unpack, source, tree, self.limits.intake)
                report("unpack", 1, 1)
                self._check_entry(spec, meta, manifest)
                if existing is not None:
                    if existing.package_hash == manifest.package_hash:
                        await self.uploads.discard(upload_id)
                        return PublishResult(existing, await self._deltas_of(existing), created=False)
                    raise PackageVersionExists(self._exists_message(spec))
                built = await self._store(tree, manifest, work, report)
                await self._build_deltas(app, spec, tree, manifest, built, work, report)
                result = await self._commit(app, actor, spec, meta, built)
            finally:
                await asyncio.to_thread(shutil.rmtree, work, ignore_errors=True)
        await self.uploads.discard(upload.id)
        if result.created:
            for hook in self.hooks:
                await hook(app, result.package, result.deltas)
        return result

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

    async def _store(self, tree: Path, manifest: Manifest, work: Path, report: Progress) -> _Built:
        total = manifest.file_count
        reused: set[str] = set()
        for i, entry in enumerate(manifest.files):
            if await self.blobs.exists(entry.sha256):
                reused.add(entry.sha256)
            else:
                await self.blobs.put_file(tree / entry.path, sha256=entry.sha256)
            if i % 50 == 0 or i + 1 == total:
                report("store", i + 1, total)
        archive_path = work / "full.zip"
        await asyncio.to_thread(write_zip, tree, manifest, archive_path)
        archive = await self.blobs.put_file(archive_path)
        manifest_path = work / "manifest.json"
        await asyncio.to_thread(manifest_path.write_bytes, manifest.to_json())
        manifest_ref = await self.blobs.put_file(manifest_path)
        # The archive and manifest may already exist (same content as another version):
        # re-check them at commit like any reused blob.
        reused |= {archive.sha256, manifest_ref.sha256}
        return _Built(manifest, (archive.sha256, archive.size), manifest_ref.sha256, reused=reused)

    async def _build_deltas(
        self,
        app: App,
        spec: PublishSpec,
        tree: Path,
        manifest: Manifest,
        built: _Built,
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
        self, app: App, actor: Actor, spec: PublishSpec, meta: dict[str, Any], built: _Built
    ) -> PublishResult:
        assert app.id is not None
        m = built.manifest
        try:
            async with self.db.write() as s:
                await lock_row(s, "blobs")
                for digest in built.reused:
                    if not await self.blobs.exists(digest):
                        raise RuntimeError(f"blob {digest} vanished during publish; retry the publish")
                pkg = Package(
                    app_id=app.id,
                    kind=spec.kind,
                    package_id=spec.package_id,
                    version=spec.version,
                    package_hash=m.package_hash,
                    codepush_hash=m.codepush_hash,
                    archive_sha256=built.archive[0],
                    archive_size=built.archive[1],
                    manifest_sha256=built.manifest_blob,
                    file_count=m.file_count,
                    total_size=m.total_size,
                    meta=meta,
                    created_by=actor.name,
                )
                s.add(pkg)
                await s.flush()
                assert pkg.id is not None
                s.add_all(
                    PackageFile(package_pk=pkg.id, path=f.path, sha256=f.sha256, size=f.size) for f in m.files
                )
                deltas = [
                    PackageDelta(to_pk=pkg.id, from_pk=base, patch_sha256=d, patch_size=size, stats=stats)
                    for base, d, size, stats in built.deltas
                ]
                s.add_all(deltas)
                record(
                    s,
                    actor,
                    "package.publish",
                    f"package:{app.name}/{spec.kind}/{spec.package_id}/{spec.version}",
                    app=app.name,
                    detail={"package_hash": m.package_hash, "deltas": len(deltas)},
                )
        except IntegrityError:
            # Another process published the same identity first.
            other = await self._find(app, spec.kind, spec.package_id, spec.version)
            if other is not None and other.package_hash == m.package_hash:
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
