"""Expo Updates protocol 1: manifests, directives and the multipart answer.

An Expo app's ``updates.url`` is ``{server}/expo/{app}/{channel}/manifest`` (or
``/expo/{app}/manifest`` with the channel in ``expo-channel-name``). The channel's
bundle lineage released most recently is served (``?package=ID`` picks another).
The bundle's files come from the package manifest: when the package holds Expo's
``metadata.json`` (what ``expo export`` writes), its ``fileMetadata[platform]`` names
the launch asset and the assets; otherwise the package's ``entry`` (or its only
``.bundle``/``.hbc``/``.js`` file) is the launch asset and every other file an asset.

Asset hashes are base64url(sha256) without padding; asset URLs are the public
content-addressed blob route, so the bytes a client downloads are the bytes hashed.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mpaas.packages.manifest import FileEntry, Manifest
from mpaas.packages.protocols.links import BlobLinks
from mpaas.packages.releases.channel_index import IndexedRelease, Lineage, PackageInfo
from mpaas.packages.releases.rollout import Device
from mpaas.packages.semver import InvalidVersion, Version
from mpaas.storage.blobs import BlobStore

EXPO_METADATA = "metadata.json"
LAUNCH_SUFFIXES = (".hbc", ".bundle", ".js")
_NAMESPACE = uuid.UUID("6f1b2f4e-5d0a-4c53-9a57-3d1c8a0e2b71")

#: (app name, part body) → ``expo-signature`` header value, or None when unsigned.
PartSigner = Callable[[str, bytes], Awaitable[str | None]]


def expo_hash(sha256_hex: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(sha256_hex)).rstrip(b"=").decode()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def update_id(release: IndexedRelease, platform: str) -> str:
    """A stable id per (release, platform), the same in every server process."""
    pkg = release.package
    return str(uuid.uuid5(_NAMESPACE, f"{release.id}:{pkg.package_hash if pkg else 'embedded'}:{platform}"))


@dataclass(frozen=True)
class ExpoRequest:
    platform: str
    runtime_version: str
    current_update_id: str | None
    client_id: str
    wants_multipart: bool
    expects_signature: bool

    def device(self) -> Device:
        try:
            version: Version | None = Version.parse(self.runtime_version)
        except InvalidVersion:
            version = None
        return Device(device_id=self.client_id, os=self.platform, app_version=version)


def parse_request(headers: Mapping[str, str], query: Mapping[str, str]) -> ExpoRequest:
    from mpaas.errors import ValidationError

    platform = (headers.get("expo-platform") or query.get("platform") or "").lower()
    runtime = headers.get("expo-runtime-version") or query.get("runtime-version") or ""
    if platform not in ("ios", "android"):
        raise ValidationError("expo-platform must be ios or android")
    if not runtime or len(runtime) > 256:
        raise ValidationError("expo-runtime-version is required")
    protocol = headers.get("expo-protocol-version", "0")
    accept = headers.get("accept", "")
    return ExpoRequest(
        platform=platform,
        runtime_version=runtime,
        current_update_id=headers.get("expo-current-update-id"),
        client_id=headers.get("eas-client-id", "")[:128],
        wants_multipart=protocol == "1" or "multipart/mixed" in accept,
        expects_signature="expo-expect-signature" in headers,
    )


def held_release(lineage: Lineage, req: ExpoRequest) -> IndexedRelease | None:
    if not req.current_update_id:
        return None
    for r in lineage.releases:
        if update_id(r, req.platform) == req.current_update_id:
            return r
    return None


def _asset(entry: FileEntry, links: BlobLinks, ext: str | None, *, launch: bool = False) -> dict[str, Any]:
    suffix = ext if ext is not None else ("." + entry.path.rsplit(".", 1)[1] if "." in entry.path else None)
    if launch:
        content_type = "application/javascript"
    else:
        content_type = mimetypes.guess_type("x" + (suffix or ""))[0] or "application/octet-stream"
    out: dict[str, Any] = {
        "hash": expo_hash(entry.sha256),
        "key": entry.sha256,
        "contentType": content_type,
        "url": links.url(entry.sha256),
    }
    if suffix:
        out["fileExtension"] = suffix
    return out


def select_files(
    manifest: Manifest, metadata: Mapping[str, Any] | None, platform: str, entry: str | None
) -> tuple[FileEntry, list[tuple[FileEntry, str | None]]]:
    """(launch asset, [(asset, extension)]) for a platform."""
    files = manifest.by_path()
    if metadata is not None:
        platform_meta = (metadata.get("fileMetadata") or {}).get(platform) or {}
        bundle = platform_meta.get("bundle")
        if isinstance(bundle, str) and bundle in files:
            assets = []
            for item in platform_meta.get("assets") or []:
                path, ext = item.get("path"), item.get("ext")
                if isinstance(path, str) and path in files:
                    assets.append((files[path], "." + ext if isinstance(ext, str) and ext else None))
            return files[bundle], assets
    launch = files.get(entry) if entry else None
    if launch is None:
        candidates = [f for f in manifest.files if f.path.endswith(LAUNCH_SUFFIXES)]
        if len(candidates) != 1:
            raise ValueError(
                "the bundle names no launch asset (no metadata.json, entry, or single .bundle/.hbc/.js)"
            )
        launch = candidates[0]
    others: list[tuple[FileEntry, str | None]] = [
        (f, None) for f in manifest.files if f.path not in (launch.path, EXPO_METADATA)
    ]
    return launch, others


class ExpoManifests:
    """Builds manifests; the file lists of a package are read from the blob store once."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._files: dict[tuple[int, str], tuple[FileEntry, list[tuple[FileEntry, str | None]]]] = {}

    async def _read(self, sha256: str) -> bytes:
        chunks = [c async for c in self.blobs.read(sha256)]
        return b"".join(chunks)

    async def files(
        self, pkg: PackageInfo, platform: str
    ) -> tuple[FileEntry, list[tuple[FileEntry, str | None]]]:
        key = (pkg.pk, platform)
        cached = self._files.get(key)
        if cached is not None:
            return cached
        manifest = Manifest.from_json(await self._read(pkg.manifest_sha256))
        meta_entry = manifest.by_path().get(EXPO_METADATA)
        metadata = json.loads(await self._read(meta_entry.sha256)) if meta_entry is not None else None
        result = select_files(manifest, metadata, platform, pkg.meta.get("entry"))
        if len(self._files) > 10_000:
            self._files.clear()
        self._files[key] = result
        return result

    async def manifest(self, release: IndexedRelease, req: ExpoRequest, links: BlobLinks) -> dict[str, Any]:
        pkg = release.package
        assert pkg is not None
        launch, assets = await self.files(pkg, req.platform)
        return {
            "id": update_id(release, req.platform),
            "createdAt": iso(release.created_at),
            "runtimeVersion": req.runtime_version,
            "launchAsset": _asset(launch, links, None, launch=True),
            "assets": [_asset(f, links, ext) for f, ext in assets],
            "metadata": {"label": release.label, "version": pkg.version},
            "extra": {},
        }


def directive(kind: str, release: IndexedRelease | None = None) -> dict[str, Any]:
    if kind == "rollBackToEmbedded":
        assert release is not None
        return {"type": kind, "parameters": {"commitTime": iso(release.created_at)}}
    return {"type": kind}


def multipart(parts: list[tuple[str, bytes, dict[str, str]]]) -> tuple[bytes, str]:
    """Encode ``multipart/mixed`` parts (name, JSON body, extra headers); return (body, content type)."""
    boundary = "mpaas-" + secrets.token_hex(12)
    out = bytearray()
    for name, body, headers in parts:
        out += f"--{boundary}\r\n".encode()
        out += f'Content-Disposition: form-data; name="{name}"\r\n'.encode()
        out += b"Content-Type: application/json; charset=utf-8\r\n"
        for key, value in headers.items():
            out += f"{key}: {value}\r\n".encode()
        out += b"\r\n" + body + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/mixed; boundary={boundary}"


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
