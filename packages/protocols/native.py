"""mpaas's own update-check protocol (``POST /client/v1/updates``), without HTTP.

See ``docs/protocol.md`` for the wire format SDK authors implement.
"""

from __future__ import annotations

import hashlib
from typing import Any

from mpaas.packages.protocols.links import BlobLinks
from mpaas.packages.releases.channel_index import (
    ChannelIndex,
    Decision,
    IndexedRelease,
    Lineage,
    Outcome,
    PackageInfo,
)
from mpaas.packages.releases.check_kernel import (
    NativePlan,
    NativeTable,
    Plan,
    Tally,
    load_object,
    native_answer,
    native_check,
)
from mpaas.packages.releases.rollout import Device
from mpaas.web.api import dumps

#: The entry points, with table_for: the kernel's, for a body as raw bytes or parsed.
__all__ = ["load_object", "native_answer", "native_check", "table_for"]

#: Encoded fragments kept per outcome (distinct delta bases × download links).
MAX_ENCODED = 256
#: Native tables kept per channel index (distinct download links × poll intervals).
MAX_TABLES = 64
#: The plan of a package the channel does not know: no gates, one outcome.
_UNKNOWN = Plan((), (None,))


def _blob(links: BlobLinks, sha256: str, size: int, target: str) -> dict[str, Any]:
    return {"url": links.url(sha256), "sha256": sha256, "size": size, "target": target}


def release_json(r: IndexedRelease) -> dict[str, Any]:
    pkg = r.package
    return {
        "id": r.id,
        "label": r.label,
        "version": pkg.version if pkg else None,
        "package_hash": pkg.package_hash if pkg else None,
        "description": r.description,
        "rollback": r.rollback_from_pk is not None,
    }


def package_answer(
    lineage: Lineage, decision: Decision, installed_hash: str | None, links: BlobLinks
) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": lineage.kind, "id": lineage.package_id, "action": decision.action}
    target = decision.target
    if target is not None:
        out["release"] = release_json(target)
    if decision.action != "update" or target is None or target.package is None:
        return out
    pkg: PackageInfo = target.package
    out["mandatory"] = decision.mandatory
    out["full"] = _blob(links, pkg.archive_sha256, pkg.archive_size, pkg.full_target)
    out["manifest"] = {
        "url": links.url(pkg.manifest_sha256),
        "sha256": pkg.manifest_sha256,
        "target": pkg.manifest_target,
    }
    delta = pkg.deltas.get(installed_hash) if installed_hash else None
    out["delta"] = (
        None
        if delta is None
        else _blob(links, delta.sha256, delta.size, delta.target) | {"from_hash": delta.from_hash}
    )
    if pkg.meta:
        out["meta"] = pkg.meta
    return out


def _digest(raw: bytes) -> int:
    """A fragment's 64-bit content digest; the ETag combines them (check_kernel.combine)."""
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")


def _encoded(
    lineage: Lineage, outcome: Outcome, held_hash: str | None, links: BlobLinks
) -> tuple[bytes, int]:
    """The package's answer object as JSON bytes, and their digest, made once per index build."""
    deltas = outcome.deltas
    base = held_hash if deltas and held_hash in deltas else None
    key = (base, links.key)
    found = outcome.encoded.get(key)
    if found is None:
        raw = dumps(package_answer(lineage, outcome.decision, base, links))
        if len(outcome.encoded) >= MAX_ENCODED:
            outcome.encoded.clear()
        found = outcome.encoded[key] = (raw, _digest(raw))
    return found


def table_for(index: ChannelIndex, links: BlobLinks, poll_interval: int) -> NativeTable:
    """The native check's memo for this index, download links and poll interval.

    Its plans are built on first use (:func:`_builder`) and live as long as the index, or
    until the links' window ends (a new ``expires``, so a new table).
    """
    key = (links.key, poll_interval)
    table = index.native_tables.get(key)
    if table is None:
        if len(index.native_tables) >= MAX_TABLES or any(
            not k.startswith(f"{links.expires}|") for k, _poll in index.native_tables
        ):  # full, or holding the URLs of an earlier window
            index.native_tables.clear()
        prefix = (
            b'{"channel":'
            + dumps(index.channel_name)
            + b',"poll_interval":'
            + dumps(poll_interval)
            + b',"packages":['
        )
        table = index.native_tables[key] = NativeTable(
            prefix, _digest(prefix), _builder(index, links), tuple(index.lineages)
        )
    return table


def _builder(index: ChannelIndex, links: BlobLinks) -> Any:
    def build(kind: str, package_id: str, held_hash: str | None, device: Device) -> NativePlan:
        lineage = index.lineages.get((kind, package_id))
        if lineage is None:
            raw = dumps({"kind": kind, "id": package_id, "action": "none"})
            return NativePlan(_UNKNOWN, (raw,), (_digest(raw),), (None,), (False,), True)
        held = lineage.by_hash.get(held_hash) if held_hash else None
        plan = lineage.plan(device, held, held_hash is not None, (device.os, device.app_version))
        raws: list[bytes] = []
        digests: list[int] = []
        tallies: list[Tally | None] = []
        quiet: list[bool] = []
        for outcome in plan.outcomes:
            raw, digest = _encoded(lineage, outcome, held_hash, links)
            raws.append(raw)
            digests.append(digest)
            tallies.append(index.tally(outcome.counted) if outcome.counted is not None else None)
            quiet.append(outcome.decision.action == "none")
        return NativePlan(plan, tuple(raws), tuple(digests), tuple(tallies), tuple(quiet))

    return build
