"""Building a channel's index from the database: releases, packages and their stored deltas.

One read per build (the channel's epoch, its releases with their packages, the deltas
to those packages); the rows become the frozen structures of
:mod:`~mpaas.packages.releases.channel_index`.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import col, select

from mpaas.packages.models import Package, PackageDelta
from mpaas.packages.releases.channel_index import (
    ChannelIndex,
    ChannelKey,
    CompiledRange,
    DeltaInfo,
    IndexedRelease,
    Lineage,
    PackageInfo,
)
from mpaas.packages.releases.models import Release, ReleaseEpoch
from mpaas.packages.releases.rollout import Targeting, parse_rules
from mpaas.packages.semver import Range
from mpaas.packages.targets import delta_target, full_target, manifest_target
from mpaas.storage.db import Database


async def build_channel_index(db: Database, channel: ChannelKey) -> ChannelIndex:
    """Read the channel's releases (oldest first) and build its index."""
    async with db.session() as s:
        epoch_row = await s.get(ReleaseEpoch, channel.channel_id)
        epoch = int(epoch_row.epoch) if epoch_row is not None else 0
        rows = (
            await s.exec(
                select(Release, Package)
                .outerjoin(Package, col(Package.id) == col(Release.package_pk))
                .where(Release.channel_id == channel.channel_id)
                .order_by(col(Release.id))
            )
        ).all()
        pks = {p.id for _r, p in rows if p is not None}
        delta_rows = (
            (
                await s.exec(
                    select(PackageDelta, Package)
                    .join(Package, col(Package.id) == col(PackageDelta.from_pk))
                    .where(col(PackageDelta.to_pk).in_(pks))
                )
            ).all()
            if pks
            else []
        )
    deltas: dict[int, list[tuple[PackageDelta, Package]]] = {}
    for d, base in delta_rows:
        deltas.setdefault(d.to_pk, []).append((d, base))
    index = ChannelIndex(channel.app_id, channel.app_name, channel.channel_id, channel.channel_name, epoch)
    packages: dict[int, PackageInfo] = {}
    ranges: dict[str, CompiledRange] = {}
    for r, p in rows:
        info = None
        if p is not None:
            assert p.id is not None
            info = packages.get(p.id) or _package_info(p, deltas.get(p.id, []))
            packages[p.id] = info
        lineage = index.lineages.setdefault((r.kind, r.package_id), Lineage(r.kind, r.package_id))
        indexed = _indexed(r, info, ranges, lineage)
        lineage.add(indexed)
        index.releases[indexed.id] = (lineage, indexed)
    index.release_count = len(rows)
    return index


def _package_info(p: Package, deltas: Iterable[tuple[PackageDelta, Package]]) -> PackageInfo:
    assert p.id is not None
    info = PackageInfo(
        pk=p.id,
        kind=p.kind,
        package_id=p.package_id,
        version=p.version,
        package_hash=p.package_hash,
        codepush_hash=p.codepush_hash,
        archive_sha256=p.archive_sha256,
        archive_size=int(p.archive_size),
        manifest_sha256=p.manifest_sha256,
        meta=dict(p.meta),
        full_target=full_target(p),
        manifest_target=manifest_target(p),
    )
    for d, base in deltas:
        info.deltas[base.package_hash] = DeltaInfo(
            base.version, base.package_hash, d.patch_sha256, int(d.patch_size), delta_target(p, base)
        )
    return info


def _indexed(
    r: Release, info: PackageInfo | None, ranges: dict[str, CompiledRange], lineage: Lineage
) -> IndexedRelease:
    assert r.id is not None
    wl = r.whitelist or {}
    rollback_from_pk = None
    if r.rollback_of is not None:
        entry = lineage.by_id.get(r.rollback_of)
        if entry is not None and entry.package is not None:
            rollback_from_pk = entry.package.pk
    platform = info.meta.get("platform") if info is not None and info.kind == "hotfix" else None
    targeting = Targeting(
        seed=r.seed,
        rollout_bp=r.rollout_bp,
        rules=parse_rules(r.rules),
        device_ids=frozenset(wl.get("device_ids", ())),
        user_ids=frozenset(wl.get("user_ids", ())),
    )
    starts_at = r.starts_at.timestamp()
    return IndexedRelease(
        id=r.id,
        seq=r.seq,
        status=r.status,
        mandatory=r.mandatory,
        description=r.description,
        starts_at=starts_at,
        created_at=r.created_at.timestamp(),
        range=_compiled(ranges, r.target_binary_range),
        targeting=targeting,
        gate=targeting.gate(starts_at),
        package=info,
        platform=platform,
        rollback_from_pk=rollback_from_pk,
    )


def _compiled(ranges: dict[str, CompiledRange], text: str | None) -> CompiledRange | None:
    if not text:
        return None
    found = ranges.get(text)
    if found is None:
        found = ranges[text] = CompiledRange(Range.parse(text))
    return found
