"""CodePush compatibility: the acquisition API's update check and reports, and diff zips.

A deployment key names a channel; the channel's bundle lineage released most recently
is what CodePush clients get. The package hash is :attr:`Package.codepush_hash`, the
hash the device computes. A client that sends a known package hash gets a *diff*: a
zip of the added and changed files plus ``hotcodepush.json`` listing ``deletedFiles``,
built on first demand, stored in the blob store and recorded in ``codepush_diffs``.

``target_binary_range`` in an available update carries the client's own binary
version: the SDK stores it as the package's ``appVersion``, and the native module
ignores an installed package whose ``appVersion`` differs from the binary's version.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from mpaas.errors import ValidationError
from mpaas.packages.manifest import Manifest
from mpaas.packages.models import Package
from mpaas.packages.protocols.links import BlobLinks
from mpaas.packages.releases.channel_index import ChannelIndex, Decision, IndexedRelease, Lineage, PackageInfo
from mpaas.packages.releases.models import CodePushDiff
from mpaas.packages.releases.rollout import Device, cached_version
from mpaas.packages.semver import InvalidVersion, Version
from mpaas.packages.service import PackageService
from mpaas.storage.blobs import BlobStore
from mpaas.storage.db import Database
from mpaas.storage.locks import lock_row

log = logging.getLogger("mpaas.codepush")

DIFF_MANIFEST = "hotcodepush.json"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
MAX_CACHE = 100_000


def param(data: Mapping[str, Any], snake: str, camel: str) -> str | None:
    """A parameter in either casing; empty values count as absent, like the SDK sends them."""
    for name in (snake, camel):
        value = data.get(name)
        if value not in (None, ""):
            return str(value)
    return None


@dataclass(frozen=True)
class CodePushCheck:
    deployment_key: str
    app_version: str
    package_hash: str | None
    label: str | None
    client_id: str | None
    is_companion: bool


def parse_check(query: Mapping[str, Any]) -> CodePushCheck:
    key = param(query, "deployment_key", "deploymentKey")
    app_version = param(query, "app_version", "appVersion")
    if not key or not app_version:
        raise ValidationError("deployment_key and app_version are required")
    return CodePushCheck(
        deployment_key=key,
        app_version=app_version,
        package_hash=param(query, "package_hash", "packageHash"),
        label=param(query, "label", "label"),
        client_id=param(query, "client_unique_id", "clientUniqueId"),
        is_companion=(param(query, "is_companion", "isCompanion") or "").lower() == "true",
    )


def device_of(check: CodePushCheck, platform: str | None = None) -> Device:
    try:
        version: Version | None = cached_version(check.app_version)
    except InvalidVersion:
        version = None
    # Without a client id every request is a new device; rollout then samples requests.
    return Device(device_id=check.client_id or "", os=platform, app_version=version)


def decide(index: ChannelIndex, check: CodePushCheck, now: float) -> tuple[Decision | None, Lineage | None]:
    lineage = index.default_lineage("bundle")
    if lineage is None:
        return None, None
    held = lineage.by_codepush_hash.get(check.package_hash) if check.package_hash else None
    device = device_of(check)
    if check.is_companion:
        device = Device(device_id=device.device_id, os=device.os, app_version=None)
    return lineage.decide(device, held, bool(check.package_hash), now), lineage


def update_info(
    check: CodePushCheck,
    decision: Decision | None,
    links: BlobLinks,
    diff: tuple[str, int] | None,
) -> dict[str, Any]:
    """The snake_case ``update_info`` object."""
    info: dict[str, Any] = {
        "download_url": "",
        "description": "",
        "is_available": False,
        "is_mandatory": False,
        "app_version": check.app_version,
        "package_hash": "",
        "label": "",
        "package_size": 0,
        "update_app_version": False,
        "should_run_binary_version": False,
        "target_binary_range": check.app_version,
    }
    if decision is None:
        return info
    target: IndexedRelease | None = decision.target
    if decision.action == "binary_update":
        info["update_app_version"] = True
        if target is not None and target.range is not None:
            info["target_binary_range"] = target.range.text
        return info
    if decision.action == "rollback_to_embedded":
        info["should_run_binary_version"] = True
        return info
    if decision.action != "update" or target is None or target.package is None:
        if target is not None and target.package is not None:
            info |= {"label": target.label, "package_hash": target.package.codepush_hash}
        return info
    pkg: PackageInfo = target.package
    sha, size = diff if diff is not None else (pkg.archive_sha256, pkg.archive_size)
    info |= {
        "download_url": links.url(sha),
        "description": target.description,
        "is_available": True,
        "is_mandatory": decision.mandatory,
        "package_hash": pkg.codepush_hash,
        "label": target.label,
        "package_size": size,
    }
    return info


def legacy(info: Mapping[str, Any]) -> dict[str, Any]:
    """The camelCase ``updateInfo`` of the legacy ``/updateCheck`` route."""
    names = {
        "download_url": "downloadURL",
        "is_available": "isAvailable",
        "is_mandatory": "isMandatory",
        "app_version": "appVersion",
        "package_hash": "packageHash",
        "package_size": "packageSize",
        "update_app_version": "updateAppVersion",
        "should_run_binary_version": "shouldRunBinaryVersion",
        "target_binary_range": "targetBinaryRange",
    }
    return {names.get(k, k): v for k, v in info.items()}


def report_event_id(kind: str, data: Mapping[str, Any]) -> str:
    """A deterministic event id, so a retried CodePush report (which carries none) counts once."""
    raw = json.dumps([kind, *(str(data.get(k) or "") for k in sorted(data))], separators=(",", ":"))
    return "cp:" + hashlib.sha256(raw.encode()).hexdigest()


def build_diff_zip(old: Manifest, new: Manifest, files: Mapping[str, Path], out: Path) -> None:
    """Write the CodePush diff zip: changed and added files, and ``hotcodepush.json``."""
    old_files = old.by_path()
    new_paths = set(new.by_path())
    deleted = sorted(p for p in old_files if p not in new_paths)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for entry in new.files:
            before = old_files.get(entry.path)
            if before is not None and before.sha256 == entry.sha256:
                continue
            info = zipfile.ZipInfo(entry.path, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[entry.path].read_bytes())
        meta = zipfile.ZipInfo(DIFF_MANIFEST, _ZIP_TIME)
        meta.compress_type = zipfile.ZIP_DEFLATED
        meta.external_attr = 0o644 << 16
        zf.writestr(meta, json.dumps({"deletedFiles": deleted}, separators=(",", ":")))


class CodePushDiffs:
    """Diff zips by (target package, client package hash): memory, then SQL, then built once."""

    def __init__(self, db: Database, blobs: BlobStore, packages: PackageService, tmp_root: Path) -> None:
        self.db = db
        self.blobs = blobs
        self.packages = packages
        self.tmp_root = tmp_root
        self.cache: dict[tuple[int, str], tuple[str, int] | None] = {}
        self._building: dict[tuple[int, str], asyncio.Future[tuple[str, int] | None]] = {}

    async def get(self, target: PackageInfo, from_hash: str) -> tuple[str, int] | None:
        """(sha256, size) of the diff from ``from_hash``, or None when that hash is unknown."""
        key = (target.pk, from_hash)
        if key in self.cache:
            return self.cache[key]
        pending = self._building.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load_or_build(target, from_hash))
            self._building[key] = pending
            pending.add_done_callback(lambda _f: self._building.pop(key, None))
        result = await asyncio.shield(pending)
        if len(self.cache) >= MAX_CACHE:
            self.cache.clear()
        self.cache[key] = result
        return result

    async def _load_or_build(self, target: PackageInfo, from_hash: str) -> tuple[str, int] | None:
        async with self.db.session() as s:
            row = (
                await s.exec(
                    select(CodePushDiff).where(
                        CodePushDiff.to_pk == target.pk, CodePushDiff.from_hash == from_hash
                    )
                )
            ).first()
            if row is not None:
                return row.sha256, int(row.size)
            new = await s.get(Package, target.pk)
            base = (
                await s.exec(
                    select(Package).where(
                        Package.app_id == (new.app_id if new else -1),
                        Package.kind == target.kind,
                        Package.package_id == target.package_id,
                        Package.codepush_hash == from_hash,
                    )
                )
            ).first()
        if new is None or base is None:
            return None
        return await self._build(new, base, from_hash)

    async def _build(self, new: Package, base: Package, from_hash: str) -> tuple[str, int]:
        await asyncio.to_thread(self.tmp_root.mkdir, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="cpdiff-", dir=self.tmp_root) as tmp:
            work = Path(tmp)
            old_manifest = await self.packages.manifest(base)
            new_manifest = await self.packages.manifest(new)
            old_by_path = old_manifest.by_path()
            files: dict[str, Path] = {}
            for entry in new_manifest.files:
                before = old_by_path.get(entry.path)
                if before is not None and before.sha256 == entry.sha256:
                    continue
                dest = work / "files" / entry.sha256
                if not dest.exists():
                    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
                    await self.blobs.get_to_file(entry.sha256, dest)
                files[entry.path] = dest
            out = work / "diff.zip"
            await asyncio.to_thread(build_diff_zip, old_manifest, new_manifest, files, out)
            ref = await self.blobs.put_file(out)
        assert new.id is not None
        try:
            async with self.db.write() as s:
                await lock_row(s, "blobs")
                if not await self.blobs.exists(ref.sha256):
                    raise RuntimeError("diff blob vanished before it was recorded; retry")
                async with s.begin_nested():
                    s.add(CodePushDiff(to_pk=new.id, from_hash=from_hash, sha256=ref.sha256, size=ref.size))
                    await s.flush()
        except IntegrityError:
            log.debug("codepush diff recorded by another process", extra={"to": new.id})
        return ref.sha256, ref.size

    @staticmethod
    def referenced_query() -> Any:
        return select(CodePushDiff.sha256)
