"""The TUF repository of a running mpaas server, checked by python-tuf's ngclient.

Packages are published through the admin HTTP API; the signing domain turns them into
targets; clients fetch ``/tuf/{app}/...``. Attacks go through a man-in-the-middle
proxy in front of the real server, or by corrupting the blob store.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
import types
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from securesystemslib.signer import CryptoSigner
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, Root, Targets, Timestamp
from tuf.ngclient import Updater
from tuf.ngclient._internal import trusted_metadata_set

from mpaas.appkeys import SETTINGS
from mpaas.signing.client import MpaasUpdateClient
from mpaas.signing.expo import verify_expo_signature
from mpaas.signing.service import SigningConfig, SigningService
from mpaas.signing.service_key import SIGNING
from mpaas.signing.tuf_root import SERIALIZER, sign_with
from mpaas.storage.blobs.base import blob_key

APP = "bank"
FULL_V1 = "offline/transfer/1.0.0/full.zip"
FULL_V2 = "offline/transfer/2.0.0/full.zip"
DELTA = "offline/transfer/2.0.0/from-1.0.0.patch"
MANIFEST_V2 = "offline/transfer/2.0.0/manifest.json"
MISMATCH = (tuf_exc.LengthOrHashMismatchError, tuf_exc.DownloadLengthMismatchError)
MPAAS = [sys.executable, "-m", "mpaas.cli.main"]


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def h5(seed: int, changed: int | None = None) -> dict[str, bytes]:
    files = {"index.html": b"<html>transfer</html>"}
    for i in range(20):
        body = hashlib.sha256(f"{seed}-{i}".encode()).digest() * 60 + b"function f%d(){}" % i * 40
        files[f"js/chunk{i}.js"] = body + (b"// changed" if i == changed else b"")
    return files


@dataclass
class Server:
    """The app under test, its signing service, and helpers to act on both."""

    client: Any
    headers: dict[str, str]
    signing: SigningService
    root: bytes
    root_key: Path
    tmp: Path
    packages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return str(self.client.make_url(f"/tuf/{APP}")).rstrip("/")

    def device(self, name: str, base: str | None = None, root: bytes | None = None) -> MpaasUpdateClient:
        url = base or self.base
        return MpaasUpdateClient(
            f"{url}/metadata/", f"{url}/targets/", root or self.root, self.tmp / "devices" / name
        )

    async def publish(self, files: dict[str, bytes], version: str, package_id: str = "transfer") -> Any:
        data = make_zip(files)
        resp = await self.client.post(
            f"/api/v1/apps/{APP}/uploads",
            json={"size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
            headers=self.headers,
        )
        assert resp.status == 201, await resp.text()
        upload_id = (await resp.json())["upload_id"]
        resp = await self.client.put(
            f"/api/v1/apps/{APP}/uploads/{upload_id}/chunks?offset=0", data=data, headers=self.headers
        )
        assert resp.status == 200, await resp.text()
        body = {"upload_id": upload_id, "kind": "offline", "id": package_id, "version": version}
        resp = await self.client.post(f"/api/v1/apps/{APP}/packages", json=body, headers=self.headers)
        assert resp.status == 201, await resp.text()
        resp = await self.client.get(
            f"/api/v1/apps/{APP}/packages/offline/{package_id}/{version}", headers=self.headers
        )
        result = await resp.json()  # with each delta's from_version and patch_sha256
        self.packages[version] = result
        return result

    async def metadata(self, filename: str) -> bytes:
        resp = await self.client.get(f"/tuf/{APP}/metadata/{filename}")
        assert resp.status == 200, filename
        return bytes(await resp.read())

    def blob_path(self, sha256: str) -> Path:
        return Path(self.client.app[SETTINGS].data_dir) / "blobs" / blob_key(sha256)

    def cli_env(self) -> dict[str, str]:
        s = self.client.app[SETTINGS]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")}
        return env | {
            "MPAAS_DATA_DIR": str(s.data_dir),
            "MPAAS_DATABASE_URL": s.database_url,
            "MPAAS_LOG_JSON": "false",
        }

    async def cli(self, *args: str) -> str:
        proc = await asyncio.to_thread(
            subprocess.run, [*MPAAS, *args], env=self.cli_env(), capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


@pytest.fixture
async def server(client: Any, admin_headers: dict[str, str], tmp_path: Path) -> Server:
    resp = await client.post("/api/v1/apps", json={"name": APP, "platforms": ["ios"]}, headers=admin_headers)
    assert resp.status == 201
    root_key = tmp_path / "offline" / "root.pem"
    root = await client.app[SIGNING].init_app(APP, [root_key])
    return Server(client, admin_headers, client.app[SIGNING], root, root_key, tmp_path)


@pytest.fixture
async def released(server: Server) -> Server:
    """Version 1.0.0, then 2.0.0 with a delta from 1.0.0."""
    await server.publish(h5(1), "1.0.0")
    v2 = await server.publish(h5(1, changed=3), "2.0.0")
    assert [d["from_version"] for d in v2["deltas"]] == ["1.0.0"]
    return server


class Mitm:
    """A proxy in front of the server that can swap what it answers for chosen paths."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.overrides: dict[str, bytes] = {}
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        name = request.path.rsplit("/", 1)[-1]
        if name in self.overrides:
            return web.Response(body=self.overrides[name], content_type="application/json")
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.upstream + request.path.removeprefix(f"/tuf/{APP}")) as resp,
        ):
            return web.Response(body=await resp.read(), status=resp.status)


@pytest.fixture
async def mitm(released: Server, aiohttp_server: Callable[..., Any]) -> Mitm:
    proxy = Mitm(released.base)
    app = web.Application()
    app.router.add_get("/{tail:.*}", proxy.handle)
    proxy.base = str((await aiohttp_server(app)).make_url(f"/tuf/{APP}")).rstrip("/")
    return proxy


class _FrozenDatetime(dt.datetime):
    frozen: dt.datetime

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> _FrozenDatetime:
        return cls.frozen  # type: ignore[return-value]


def freeze_client_clock(monkeypatch: pytest.MonkeyPatch, at: dt.datetime) -> None:
    """ngclient reads "now" once, in TrustedMetadataSet: move that clock."""
    _FrozenDatetime.frozen = at
    monkeypatch.setattr(
        trusted_metadata_set,
        "datetime",
        types.SimpleNamespace(datetime=_FrozenDatetime, timezone=dt.timezone),
    )


# ---------------------------------------------------------------- downloads


async def test_unmodified_ngclient_downloads_package_and_delta(released: Server) -> None:
    cache = released.tmp / "ngclient"
    (cache / "metadata").mkdir(parents=True)
    (cache / "targets").mkdir()

    def download() -> dict[str, tuple[bytes, dict[str, Any]]]:
        updater = Updater(
            metadata_dir=str(cache / "metadata"),
            metadata_base_url=f"{released.base}/metadata/",
            target_base_url=f"{released.base}/targets/",
            target_dir=str(cache / "targets"),
            bootstrap=released.root,
        )
        updater.refresh()
        out = {}
        for name in (FULL_V1, FULL_V2, DELTA, MANIFEST_V2):
            info = updater.get_targetinfo(name)
            assert info is not None, name
            out[name] = (Path(updater.download_target(info)).read_bytes(), info.custom)
        return out

    got = await asyncio.to_thread(download)
    v2 = released.packages["2.0.0"]
    archive = await released.client.get(
        f"/api/v1/apps/{APP}/packages/offline/transfer/2.0.0/archive", headers=released.headers
    )
    assert got[FULL_V2][0] == await archive.read()
    assert hashlib.sha256(got[DELTA][0]).hexdigest() == v2["deltas"][0]["patch_sha256"]
    assert json.loads(got[MANIFEST_V2][0])["package_hash"] == v2["package_hash"]
    common = {"kind": "offline", "id": "transfer", "version": "2.0.0", "package_hash": v2["package_hash"]}
    assert got[FULL_V2][1] == common | {"artifact": "full"}
    assert got[DELTA][1] == common | {
        "artifact": "delta",
        "from_version": "1.0.0",
        "from_package_hash": released.packages["1.0.0"]["package_hash"],
    }


async def test_each_publish_signs_new_versions_and_caching_headers(released: Server) -> None:
    # init (1), then one targets change per publish.
    assert await released.signing.store.versions(APP, "targets") == [1, 2, 3]
    assert await released.signing.store.versions(APP, "timestamp") == [1, 2, 3]
    resp = await released.client.get(f"/tuf/{APP}/metadata/timestamp.json")
    assert resp.headers["Cache-Control"] == "no-cache"
    resp = await released.client.get(f"/tuf/{APP}/metadata/3.targets.json")
    assert "immutable" in resp.headers["Cache-Control"]
    targets = Metadata[Targets].from_bytes(await resp.read()).signed
    assert set(targets.targets) == {
        FULL_V1,
        FULL_V2,
        DELTA,
        "offline/transfer/1.0.0/manifest.json",
        MANIFEST_V2,
    }


async def test_missing_files_and_foreign_blobs_are_404(released: Server, client: Any) -> None:
    for path in (
        "metadata/2.root.json",
        "metadata/targets.json",
        "metadata/x.json",
        "metadata/4.snapshot.json",
    ):
        assert (await client.get(f"/tuf/{APP}/{path}")).status == 404, path
    assert (await client.get("/tuf/nope/metadata/1.root.json")).status == 404
    v1 = released.packages["1.0.0"]
    ok = f"/tuf/{APP}/targets/offline/transfer/1.0.0/{v1['archive_sha256']}.full.zip"
    assert (await client.get(ok)).status == 200
    # A blob of the app that is not a target (one file of the package), and a made-up digest.
    file_sha = hashlib.sha256(h5(1)["index.html"]).hexdigest()
    for sha in (file_sha, "0" * 64):
        assert (await client.get(f"/tuf/{APP}/targets/offline/transfer/1.0.0/{sha}.full.zip")).status == 404
    # Another app (without keys) cannot be used to read this app's blobs.
    resp = await client.post(
        "/api/v1/apps", json={"name": "other", "platforms": ["ios"]}, headers=released.headers
    )
    assert resp.status == 201
    assert (await client.get(ok.replace(f"/tuf/{APP}/", "/tuf/other/"))).status == 404


async def test_channels_are_signed_custom_fields(released: Server) -> None:
    from sqlmodel import select

    from mpaas.packages.models import Package

    async with released.client.app[SIGNING].db.session() as s:
        pkg = (await s.exec(select(Package).where(Package.version == "2.0.0"))).one()
    await released.signing.set_channel(APP, pkg, "staging")
    await released.signing.set_channel(APP, pkg, "production")
    device = released.device("channels")
    for name in (FULL_V2, DELTA, MANIFEST_V2):
        info = await asyncio.to_thread(device.target_info, name)
        assert info.custom["channels"] == ["production", "staging"]
    await released.signing.set_channels(APP, pkg, ["production"])
    info = await asyncio.to_thread(released.device("channels-2").target_info, FULL_V2)
    assert info.custom["channels"] == ["production"]


async def test_reconciler_signs_packages_the_hook_missed(
    client: Any, admin_headers: dict[str, str], tmp_path: Path
) -> None:
    resp = await client.post("/api/v1/apps", json={"name": APP, "platforms": ["ios"]}, headers=admin_headers)
    assert resp.status == 201
    svc: SigningService = client.app[SIGNING]
    state = Server(client, admin_headers, svc, b"", tmp_path / "root.pem", tmp_path)
    # Published before the app had keys: the hook skipped them, as after a crash.
    await state.publish(h5(1), "1.0.0")
    await state.publish(h5(1, changed=2), "2.0.0")
    state.root = await svc.init_app(APP, [state.root_key])
    assert await svc.repo.list_targets(APP) == {}
    await svc.maintain()
    assert set(await svc.repo.list_targets(APP)) >= {FULL_V1, FULL_V2, DELTA, MANIFEST_V2}
    assert await svc.reconcile(APP) == 0
    path = await asyncio.to_thread(state.device("late").download, DELTA)
    assert (
        hashlib.sha256(path.read_bytes()).hexdigest() == state.packages["2.0.0"]["deltas"][0]["patch_sha256"]
    )


# ---------------------------------------------------------------- refusals


async def test_refuses_tampered_target_bytes(released: Server) -> None:
    blob = released.blob_path(released.packages["2.0.0"]["archive_sha256"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    device = released.device("tampered")
    with pytest.raises(tuf_exc.LengthOrHashMismatchError):
        await asyncio.to_thread(device.download, FULL_V2)
    assert not any((released.tmp / "devices" / "tampered" / "targets").iterdir())


async def test_refuses_target_longer_than_declared(released: Server) -> None:
    blob = released.blob_path(released.packages["2.0.0"]["deltas"][0]["patch_sha256"])
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"trailing bytes")
    with pytest.raises(tuf_exc.DownloadLengthMismatchError):
        await asyncio.to_thread(released.device("longer").download, DELTA)


async def test_refuses_replayed_older_timestamp_and_snapshot(released: Server, mitm: Mitm) -> None:
    device = released.device("replay", base=mitm.base)
    old_timestamp = await released.metadata("2.timestamp.json")
    await asyncio.to_thread(device.refresh)  # has seen timestamp v3 / snapshot v3

    mitm.overrides["timestamp.json"] = old_timestamp
    with pytest.raises(tuf_exc.BadVersionNumberError):
        await asyncio.to_thread(device.refresh)

    # The older snapshot served under the current name fails the hash the timestamp pins.
    del mitm.overrides["timestamp.json"]
    mitm.overrides["3.snapshot.json"] = await released.metadata("2.snapshot.json")
    with pytest.raises(MISMATCH):
        await asyncio.to_thread(released.device("replay-fresh", base=mitm.base).refresh)


async def test_refuses_snapshot_mixed_with_targets_of_another_version(released: Server, mitm: Mitm) -> None:
    mitm.overrides["3.targets.json"] = await released.metadata("2.targets.json")
    with pytest.raises(MISMATCH):
        await asyncio.to_thread(released.device("mixed", base=mitm.base).download, FULL_V2)


async def test_refuses_metadata_signed_by_an_untrusted_key(released: Server, mitm: Mitm) -> None:
    forged = Metadata[Timestamp].from_bytes(await released.metadata("timestamp.json"))
    forged.signed.version += 1
    forged.signatures.clear()
    sign_with(forged, [CryptoSigner.generate_ecdsa()])
    mitm.overrides["timestamp.json"] = forged.to_bytes(SERIALIZER)
    with pytest.raises(tuf_exc.UnsignedMetadataError):
        await asyncio.to_thread(released.device("untrusted", base=mitm.base).refresh)


async def test_refuses_expired_timestamp_until_the_server_re_signs(
    released: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = released.device("clock")
    await asyncio.to_thread(device.refresh)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1, hours=1)
    freeze_client_clock(monkeypatch, later)
    with pytest.raises(tuf_exc.ExpiredMetadataError, match="timestamp"):
        await asyncio.to_thread(device.refresh)

    # The maintenance job of a server whose clock has also moved re-signs in time.
    settings = released.client.app[SETTINGS]
    moved = SigningService(
        released.signing.db, released.signing.blobs, SigningConfig.from_settings(settings), now=lambda: later
    )
    await moved.maintain()
    assert await moved.store.versions(APP, "timestamp") == [1, 2, 3, 4]
    await asyncio.to_thread(device.refresh)
    await moved.maintain()  # nothing is due any more: no new version
    assert await moved.store.versions(APP, "timestamp") == [1, 2, 3, 4]


# ---------------------------------------------------------------- keys through the CLI


async def test_rotations_through_the_cli_keep_old_clients_updating(released: Server) -> None:
    old_device = released.device("old")
    await asyncio.to_thread(old_device.download, FULL_V2)

    out = json.loads(
        await released.cli(
            "keys",
            "rotate",
            "--app",
            APP,
            "--role",
            "timestamp",
            "--root-key",
            str(released.root_key),
            "--json",
        )
    )
    assert out["root_version"] == 2
    # The running server signs with the new key, found on disk by its id.
    await released.publish(h5(1, changed=5), "3.0.0")
    root2 = Metadata[Root].from_bytes(await released.metadata("2.root.json")).signed
    timestamp = Metadata[Timestamp].from_bytes(await released.metadata("timestamp.json"))
    assert list(timestamp.signatures) == root2.roles["timestamp"].keyids
    await asyncio.to_thread(old_device.refresh)
    await asyncio.to_thread(old_device.download, "offline/transfer/3.0.0/full.zip")

    new_root = released.tmp / "offline" / "root-2.pem"
    await released.cli(
        "keys", "rotate", "--app", APP, "--role", "root",
        "--root-key", str(released.root_key), "--new-root-key-out", str(new_root),
    )  # fmt: skip
    assert new_root.stat().st_mode & 0o077 == 0
    await released.publish(h5(1, changed=6), "4.0.0")
    for device in (old_device, released.device("pinned-v1-only")):
        await asyncio.to_thread(device.refresh)
        path = await asyncio.to_thread(device.download, "offline/transfer/4.0.0/full.zip")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == released.packages["4.0.0"]["archive_sha256"]

    # The old root key alone can no longer change the root.
    proc = await asyncio.to_thread(
        subprocess.run,
        [*MPAAS, "keys", "rotate", "--app", APP, "--role", "snapshot", "--root-key", str(released.root_key)],
        env=released.cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "not signed by a threshold" in proc.stderr
    listing = json.loads(await released.cli("keys", "list", "--app", APP, "--json"))["items"][0]
    assert listing["root_version"] == 3
    online = [k for r in listing["roles"] if r["role"] != "root" for k in r["keys"]]
    assert online and all(k["on_disk"] for k in online)
    key_files = list((Path(released.client.app[SETTINGS].data_dir) / "keys" / APP).glob("*.pem"))
    assert len(key_files) == 4 and all(p.stat().st_mode & 0o077 == 0 for p in key_files)


async def test_keys_init_refuses_a_second_ceremony(released: Server) -> None:
    proc = await asyncio.to_thread(
        subprocess.run,
        [*MPAAS, "keys", "init", "--app", APP, "--root-key-out", str(released.tmp / "again.pem")],
        env=released.cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "already has TUF keys" in proc.stderr
    assert not (released.tmp / "again.pem").exists()


async def test_expo_signature_from_the_cli_certificate(server: Server) -> None:
    cert = (await server.cli("keys", "expo-cert", "--app", APP)).encode()
    assert cert.startswith(b"-----BEGIN CERTIFICATE-----")
    body = json.dumps({"id": "0754dad0-d200-d634-113c-ef1f26106028", "launchAsset": {}}).encode()
    header = await server.signing.sign_expo_part(APP, body)
    assert verify_expo_signature(body, header, cert, keyid="main")
    for i in (0, len(body) // 2, len(body) - 1):
        changed = bytearray(body)
        changed[i] ^= 0x01
        assert not verify_expo_signature(bytes(changed), header, cert, keyid="main")
    assert server.signing.expo_certificate(APP) == cert
