"""The publish pipeline's store and commit steps (steps 3 and 5 of :mod:`mpaas.packages.service`).

:func:`store_tree` puts each file, the deterministic zip and the manifest into the blob
store; :func:`insert_package` then inserts the package, its files and its deltas in one
transaction, under the ``blobs`` maintenance lock, after re-checking that every reused
blob still exists (``mpaas gc`` may have removed an unreferenced one meanwhile).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpaas.identity.audit import Actor, record
from mpaas.identity.models import App
from mpaas.packages.intake.zipout import write_zip
from mpaas.packages.manifest import Manifest
from mpaas.packages.models import Package, PackageDelta, PackageFile
from mpaas.packages.spec import PublishSpec
from mpaas.storage.blobs import BlobStore
from mpaas.storage.db import Database
from mpaas.storage.locks import lock_row

#: Progress callback: (stage, done, total).
Progress = Callable[[str, int, int], None]


@dataclass
class Built:
    """What the off-loop part of a publish produced, before the commit."""

    manifest: Manifest
    archive: tuple[str, int]
    manifest_blob: str
    deltas: list[tuple[int, str, int, dict[str, Any]]] = field(default_factory=list)
    reused: set[str] = field(default_factory=set)


async def store_tree(blobs: BlobStore, tree: Path, manifest: Manifest, work: Path, report: Progress) -> Built:
    total = manifest.file_count
    reused: set[str] = set()
    for i, entry in enumerate(manifest.files):
        if await blobs.exists(entry.sha256):
            reused.add(entry.sha256)
        else:
            await blobs.put_file(tree / entry.path, sha256=entry.sha256)
        if i % 50 == 0 or i + 1 == total:
            report("store", i + 1, total)
    archive_path = work / "full.zip"
    await asyncio.to_thread(write_zip, tree, manifest, archive_path)
    archive = await blobs.put_file(archive_path)
    manifest_path = work / "manifest.json"
    await asyncio.to_thread(manifest_path.write_bytes, manifest.to_json())
    manifest_ref = await blobs.put_file(manifest_path)
    # The archive and manifest may already exist (same content as another version):
    # re-check them at commit like any reused blob.
    reused |= {archive.sha256, manifest_ref.sha256}
    return Built(manifest, (archive.sha256, archive.size), manifest_ref.sha256, reused=reused)


async def insert_package(
    db: Database,
    blobs: BlobStore,
    app: App,
    actor: Actor,
    spec: PublishSpec,
    meta: dict[str, Any],
    built: Built,
) -> tuple[Package, list[PackageDelta]]:
    """The commit; raises IntegrityError when another process published the same identity first."""
    assert app.id is not None
    m = built.manifest
    async with db.write() as s:
        await lock_row(s, "blobs")
        for digest in built.reused:
            if not await blobs.exists(digest):
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
        s.add_all(PackageFile(package_pk=pkg.id, path=f.path, sha256=f.sha256, size=f.size) for f in m.files)
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
    return pkg, deltas
