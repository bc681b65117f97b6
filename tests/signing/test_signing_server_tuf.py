"""The TUF repository of a running mpaas app, checked by python-tuf's ngclient.

Packages are published through the admin HTTP API; the packages domain hands their
targets to the signing domain; clients fetch ``/tuf/{app}/...``. Attacks go through a
man-in-the-middle proxy in front of the real server, or by corrupting the blob store.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner
from signing_support import APP, MISMATCH, Mitm, Server, freeze_client_clock, h5
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, Targets, Timestamp
from tuf.ngclient import Updater

from mpaas.appkeys import SETTINGS
from mpaas.signing.config import SigningConfig
from mpaas.signing.service import SigningService
from mpaas.signing.service_key import SIGNING
from mpaas.signing.tuf_root import SERIALIZER, sign_with

FULL_V1 = "offline/transfer/1.0.0/full.zip"
FULL_V2 = "offline/transfer/2.0.0/full.zip"
DELTA = "offline/transfer/2.0.0/from-1.0.0.patch"
MANIFEST_V2 = "offline/transfer/2.0.0/manifest.json"


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
    config = SigningConfig.from_settings(settings)
    moved = SigningService(released.signing.db, config, released.signing.targets, now=lambda: later)
    await moved.maintain()
    assert await moved.store.versions(APP, "timestamp") == [1, 2, 3, 4]
    await asyncio.to_thread(device.refresh)
    await moved.maintain()  # nothing is due any more: no new version
    assert await moved.store.versions(APP, "timestamp") == [1, 2, 3, 4]
