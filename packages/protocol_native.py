"""mpaas's own update-check protocol (``POST /client/v1/updates``), without HTTP.

See ``docs/protocol.md`` for the wire format SDK authors implement.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple

from mpaas.errors import ValidationError
from mpaas.http import dumps
from mpaas.packages.models import KINDS
from mpaas.packages.rollout import Device, cached_version
from mpaas.packages.semver import InvalidVersion, Version
from mpaas.packages.update_index import (
    ChannelIndex,
    Decision,
    IndexedRelease,
    Lineage,
    Outcome,
    PackageInfo,
)

MAX_PACKAGES = 500
MAX_TAGS = 50
#: Encoded fragments kept per outcome (distinct delta bases × base URLs).
MAX_ENCODED = 256
_KINDS = frozenset(KINDS)
_PREFIXES: dict[tuple[str, int], bytes] = {}


#: An installed package as the client names it: (kind, package id, package hash or None).
Installed = tuple[str, str, str | None]


class NativeCheck(NamedTuple):
    device: Device
    installed: tuple[Installed, ...]
    discover: bool
    #: The device's (os, app_version) as sent: the key of the per-binary decision plans.
    binary: tuple[str | None, str | None] = (None, None)


class Answer(NamedTuple):
    body: bytes
    #: Quoted; derived from the answer's content, so every process agrees on it.
    etag: str
    #: Release ids whose check counters move.
    counted: list[int]


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
        return cached_version(text)
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


def _installed(item: Any) -> Installed:
    """One entry of ``packages``, validated with the precise error messages."""
    if not isinstance(item, dict):
        raise ValidationError("each entry of 'packages' must be an object with kind, id and hash")
    kind = _str(item, "kind", required=True, max_len=16)
    if kind not in KINDS:
        raise ValidationError(f"package kind must be one of {', '.join(KINDS)}")
    pid = _str(item, "id", required=True)
    assert kind is not None and pid is not None
    return (kind, pid, _str(item, "hash", max_len=64))


def parse_check(data: Mapping[str, Any]) -> NativeCheck:
    raw = data.get("packages") or []
    if not isinstance(raw, list) or len(raw) > MAX_PACKAGES:
        raise ValidationError(f"field 'packages' must be a list of at most {MAX_PACKAGES} objects")
    installed = []
    for item in raw:
        # The common, valid entry is checked inline; anything else takes the path that
        # names the problem.
        if item.__class__ is dict:
            kind, pid, digest = item.get("kind"), item.get("id"), item.get("hash")
            if (
                kind.__class__ is str
                and kind in _KINDS
                and pid.__class__ is str
                and 0 < len(pid) <= 128
                and (digest is None or (digest.__class__ is str and len(digest) <= 64))
            ):
                installed.append((kind, pid, digest or None))
                continue
        installed.append(_installed(item))
    discover = data.get("discover", False)
    if not isinstance(discover, bool):
        raise ValidationError("field 'discover' must be a boolean")
    device = parse_device(data)
    app_version = data.get("app_version") or None
    return NativeCheck(device, tuple(installed), discover, (device.os, app_version))


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


def _prefix(channel: str, poll_interval: int) -> bytes:
    found = _PREFIXES.get((channel, poll_interval))
    if found is None:
        if len(_PREFIXES) >= 1024:
            _PREFIXES.clear()
        found = _PREFIXES[(channel, poll_interval)] = (
            b'{"channel":' + dumps(channel) + b',"poll_interval":' + dumps(poll_interval) + b',"packages":['
        )
    return found


def _digest(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=16).digest()


def _encoded(lineage: Lineage, outcome: Outcome, held_hash: str | None, base_url: str) -> tuple[bytes, bytes]:
    """The package's answer object as JSON bytes, and their digest, made once per index build."""
    deltas = outcome.deltas
    base = held_hash if deltas and held_hash in deltas else None
    key = (base, base_url)
    found = outcome.encoded.get(key)
    if found is None:
        raw = dumps(package_answer(lineage, outcome.decision, base, base_url))
        if len(outcome.encoded) >= MAX_ENCODED:
            outcome.encoded.clear()
        found = outcome.encoded[key] = (raw, _digest(raw))
    return found


def answer(index: ChannelIndex, check: NativeCheck, base_url: str, poll_interval: int, now: float) -> Answer:
    """The answer body (bytes), its ETag, and the release ids whose check counters move.

    Per installed package only the per-device gates run (:meth:`Lineage.choose`); the
    package's JSON object is cached bytes, and the ETag hashes the objects' digests.
    """
    device, binary, discover = check.device, check.binary, check.discover
    lineages = index.lineages
    unknown: list[bytes] = []
    parts: list[bytes] = []
    digests: list[bytes] = []
    counted: list[int] = []
    seen: set[tuple[str, str]] = set()
    for kind, package_id, held_hash in check.installed:
        key = (kind, package_id)
        if key in seen:
            continue
        seen.add(key)
        lineage = lineages.get(key)
        if lineage is None:
            unknown.append(dumps({"kind": kind, "id": package_id, "action": "none"}))
            continue
        held = lineage.by_hash.get(held_hash) if held_hash else None
        outcome = lineage.choose(device, held, held_hash is not None, now, binary)
        if held_hash is None and discover and outcome.decision.action == "none":
            continue
        if outcome.counted is not None:
            counted.append(outcome.counted)
        raw, digest = _encoded(lineage, outcome, held_hash, base_url)
        parts.append(raw)
        digests.append(digest)
    if discover:
        for key, lineage in lineages.items():
            if key in seen:
                continue
            outcome = lineage.choose(device, None, False, now, binary)
            if outcome.decision.action == "none":
                continue
            if outcome.counted is not None:
                counted.append(outcome.counted)
            raw, digest = _encoded(lineage, outcome, None, base_url)
            parts.append(raw)
            digests.append(digest)
    if unknown:
        parts[:0] = unknown
        digests[:0] = [_digest(raw) for raw in unknown]
    prefix = _prefix(index.channel_name, poll_interval)
    etag = '"' + hashlib.blake2b(prefix + b"".join(digests), digest_size=16).hexdigest() + '"'
    return Answer(prefix + b",".join(parts) + b"]}", etag, counted)
