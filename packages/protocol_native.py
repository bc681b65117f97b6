"""mpaas's own update-check protocol (``POST /client/v1/updates``), without HTTP.

See ``docs/protocol.md`` for the wire format SDK authors implement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mpaas.errors import ValidationError
from mpaas.packages.models import KINDS
from mpaas.packages.rollout import Device
from mpaas.packages.semver import InvalidVersion, Version
from mpaas.packages.update_index import ChannelIndex, Decision, IndexedRelease, Lineage, PackageInfo

MAX_PACKAGES = 500
MAX_TAGS = 50


@dataclass(frozen=True)
class Installed:
    kind: str
    package_id: str
    hash: str | None


@dataclass(frozen=True)
class NativeCheck:
    device: Device
    installed: tuple[Installed, ...]
    discover: bool


def _str(data: Mapping[str, Any], name: str, *, required: bool = False, max_len: int = 128) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise ValidationError(f"field {name!r} is required")
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise ValidationError(f"field {name!r} must be a string of at most {max_len} characters")
    return value


def _version(data: Mapping[str, Any], name: str) -> Version | None:
    text = _str(data, name, max_len=64)
    if text is None:
        return None
    try:
        return Version.parse(text)
    except InvalidVersion:
        raise ValidationError(f"field {name!r} must be a version such as 5.2.1, not {text!r}") from None


def parse_device(data: Mapping[str, Any]) -> Device:
    tags = data.get("tags") or []
    if not isinstance(tags, list) or len(tags) > MAX_TAGS or not all(isinstance(t, str) for t in tags):
        raise ValidationError(f"field 'tags' must be a list of at most {MAX_TAGS} strings")
    os_name = _str(data, "os", max_len=32) or _str(data, "platform", max_len=32)
    region = _str(data, "region", max_len=32)
    tier = _str(data, "tier", max_len=64)
    device_id = _str(data, "device_id", required=True)
    assert device_id is not None
    return Device(
        device_id=device_id,
        user_id=_str(data, "user_id"),
        os=os_name.lower() if os_name else None,
        os_version=_version(data, "os_version"),
        model=_str(data, "model"),
        region=region.lower() if region else None,
        app_version=_version(data, "app_version"),
        tags=frozenset(tags),
        tier=tier.lower() if tier else None,
    )


def parse_check(data: Mapping[str, Any]) -> NativeCheck:
    raw = data.get("packages") or []
    if not isinstance(raw, list) or len(raw) > MAX_PACKAGES:
        raise ValidationError(f"field 'packages' must be a list of at most {MAX_PACKAGES} objects")
    installed = []
    for item in raw:
        if not isinstance(item, dict):
            raise ValidationError("each entry of 'packages' must be an object with kind, id and hash")
        kind = _str(item, "kind", required=True, max_len=16)
        if kind not in KINDS:
            raise ValidationError(f"package kind must be one of {', '.join(KINDS)}")
        pid = _str(item, "id", required=True)
        assert kind is not None and pid is not None
        installed.append(Installed(kind, pid, _str(item, "hash", max_len=64)))
    discover = data.get("discover", False)
    if not isinstance(discover, bool):
        raise ValidationError("field 'discover' must be a boolean")
    return NativeCheck(parse_device(data), tuple(installed), discover)


def _blob(base_url: str, sha256: str, size: int, target: str) -> dict[str, Any]:
    return {"url": f"{base_url}/client/v1/blobs/{sha256}", "sha256": sha256, "size": size, "target": target}


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
    lineage: Lineage, decision: Decision, installed_hash: str | None, base_url: str
) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": lineage.kind, "id": lineage.package_id, "action": decision.action}
    target = decision.target
    if target is not None:
        out["release"] = release_json(target)
    if decision.action != "update" or target is None or target.package is None:
        return out
    pkg: PackageInfo = target.package
    out["mandatory"] = decision.mandatory
    out["full"] = _blob(base_url, pkg.archive_sha256, pkg.archive_size, pkg.full_target)
    out["manifest"] = {
        "url": f"{base_url}/client/v1/blobs/{pkg.manifest_sha256}",
        "sha256": pkg.manifest_sha256,
        "target": pkg.manifest_target,
    }
    delta = pkg.deltas.get(installed_hash) if installed_hash else None
    out["delta"] = (
        None
        if delta is None
        else _blob(base_url, delta.sha256, delta.size, delta.target) | {"from_hash": delta.from_hash}
    )
    if pkg.meta:
        out["meta"] = pkg.meta
    return out


def answer(
    index: ChannelIndex, check: NativeCheck, base_url: str, poll_interval: int, now: float
) -> tuple[dict[str, Any], list[int]]:
    """The answer body, and the release ids whose check counters move."""
    results = []
    counted: list[int] = []
    seen: set[tuple[str, str]] = set()
    wanted: list[tuple[Lineage, str | None]] = []
    for item in check.installed:
        key = (item.kind, item.package_id)
        if key in seen:
            continue
        seen.add(key)
        lineage = index.lineages.get(key)
        if lineage is None:
            results.append({"kind": item.kind, "id": item.package_id, "action": "none"})
            continue
        wanted.append((lineage, item.hash))
    if check.discover:
        wanted += [(lin, None) for key, lin in index.lineages.items() if key not in seen]
    for lineage, held_hash in wanted:
        held = lineage.by_hash.get(held_hash) if held_hash else None
        decision = lineage.decide(check.device, held, bool(held_hash), now)
        if decision.action == "none" and held_hash is None and check.discover:
            continue
        if decision.target is not None:
            counted.append(decision.target.id)
        results.append(package_answer(lineage, decision, held_hash, base_url))
    body = {"channel": index.channel_name, "poll_interval": poll_interval, "packages": results}
    return body, counted
