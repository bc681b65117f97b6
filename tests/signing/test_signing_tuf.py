"""A TUF repository and the unmodified python-tuf ngclient, over a tiny HTTP server:
what gets signed, and the attacks a client refuses."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner
from signing_support import APP, MISMATCH, PATCH, PKG, Repo, freeze_client_clock, make_repo_app, sha
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Timestamp

from mpaas.signing.errors import InvalidMetadata
from mpaas.signing.keys import DirectoryKeyring, generate_app_keys
from mpaas.signing.targets import target_path_on_disk
from mpaas.signing.tuf_repo import TufRepository
from mpaas.signing.tuf_root import SERIALIZER, sign_with
from mpaas.signing.tuf_store import InMemoryMetadataStore

# ---------------------------------------------------------------- happy path


async def test_ngclient_downloads_published_targets(repo: Repo, tmp_path: Path) -> None:
    await repo.publish(PKG, b"full package bytes", kind="offline", id="transfer", version="1.2.0")
    await repo.publish(PATCH, b"a patch")
    client = repo.client(tmp_path / "device")

    path = await asyncio.to_thread(client.download, PKG)
    assert path.read_bytes() == b"full package bytes"
    assert (await asyncio.to_thread(client.download, PATCH)).read_bytes() == b"a patch"
    info = await asyncio.to_thread(client.target_info, PKG)
    assert info.custom == {"kind": "offline", "id": "transfer", "version": "1.2.0"}


async def test_every_change_bumps_snapshot_and_timestamp(repo: Repo) -> None:
    assert repo.store.versions(APP, "timestamp") == [1]
    await repo.publish(PKG, b"one")
    await repo.publish(PATCH, b"two")
    await repo.repo.remove_targets(APP, [PATCH])
    assert repo.store.versions(APP, "targets") == [1, 2, 3, 4]
    assert repo.store.versions(APP, "snapshot") == [1, 2, 3, 4]
    assert repo.store.versions(APP, "timestamp") == [1, 2, 3, 4]
    assert list(await repo.repo.list_targets(APP)) == [PKG]

    timestamp = Metadata[Timestamp].from_bytes(await repo.metadata("timestamp.json")).signed
    snapshot_raw = await repo.metadata("4.snapshot.json")
    assert timestamp.snapshot_meta == MetaFile(4, len(snapshot_raw), {"sha256": sha(snapshot_raw)})
    targets_raw = await repo.metadata("4.targets.json")
    snapshot = Metadata[Snapshot].from_bytes(snapshot_raw).signed
    assert snapshot.meta["targets.json"] == MetaFile(4, len(targets_raw), {"sha256": sha(targets_raw)})


async def test_unchanged_targets_and_unknown_removals_sign_nothing(repo: Repo) -> None:
    version = await repo.publish(PKG, b"one")
    assert await repo.publish(PKG, b"one") == version
    assert await repo.repo.remove_targets(APP, ["no/such/file"]) == version
    assert repo.store.versions(APP, "timestamp") == [1, 2]


async def test_refresh_timestamp_always_takes_a_new_version(repo: Repo, tmp_path: Path) -> None:
    client = repo.client(tmp_path / "device")
    await asyncio.to_thread(client.refresh)
    assert await repo.repo.refresh_timestamp(APP) == 2
    assert await repo.repo.refresh_timestamp(APP) == 3
    assert repo.store.versions(APP, "snapshot") == [1]
    await asyncio.to_thread(client.refresh)


async def test_expiry_policy_and_injected_clock(tmp_path: Path) -> None:
    clock = [dt.datetime(2030, 1, 1, tzinfo=dt.UTC)]
    keys = generate_app_keys(APP, tmp_path / "root.pem", tmp_path / "online", now=lambda: clock[0])
    repo = TufRepository(InMemoryMetadataStore(), now=lambda: clock[0])
    await repo.init_repo(APP, keys.root_metadata, keys.online_signers.values())
    assert await repo.expiring_roles(APP, dt.timedelta(hours=1)) == []
    assert await repo.timestamp_expiring(APP, dt.timedelta(days=1))
    assert await repo.expiring_roles(APP, dt.timedelta(days=8)) == ["snapshot", "timestamp"]

    clock[0] += dt.timedelta(hours=20)
    assert await repo.refresh_expiring(APP, dt.timedelta(hours=6)) == ["timestamp"]
    assert not await repo.timestamp_expiring(APP, dt.timedelta(hours=6))
    assert await repo.refresh_expiring(APP, dt.timedelta(hours=6)) == []

    clock[0] += dt.timedelta(days=6, hours=20)
    assert await repo.refresh_expiring(APP, dt.timedelta(hours=6)) == ["snapshot", "timestamp"]
    assert await repo.expiring_roles(APP, dt.timedelta(days=400)) == [
        "root",
        "targets",
        "snapshot",
        "timestamp",
    ]


# ---------------------------------------------------------------- refusals


async def test_refuses_tampered_target(repo: Repo, tmp_path: Path) -> None:
    await repo.publish(PKG, b"genuine bytes")
    repo.target_overrides[target_path_on_disk(PKG, sha(b"genuine bytes"))] = b"genuine bytez"
    client = repo.client(tmp_path / "device")
    with pytest.raises(tuf_exc.LengthOrHashMismatchError):
        await asyncio.to_thread(client.download, PKG)
    assert not any((tmp_path / "device" / "targets").iterdir())


async def test_refuses_target_longer_than_declared(repo: Repo, tmp_path: Path) -> None:
    await repo.publish(PKG, b"genuine bytes")
    repo.target_overrides[target_path_on_disk(PKG, sha(b"genuine bytes"))] = b"genuine bytes and more"
    with pytest.raises(tuf_exc.DownloadLengthMismatchError):
        await asyncio.to_thread(repo.client(tmp_path / "device").download, PKG)


async def test_refuses_replayed_older_timestamp(repo: Repo, tmp_path: Path) -> None:
    old_timestamp = await repo.metadata("timestamp.json")
    await repo.publish(PKG, b"v2")
    await asyncio.to_thread(repo.client(tmp_path / "device").refresh)

    repo.metadata_overrides["timestamp.json"] = old_timestamp
    with pytest.raises(tuf_exc.BadVersionNumberError):
        await asyncio.to_thread(repo.client(tmp_path / "device").refresh)
    # A fresh device has seen nothing newer, so the replay only works on it: which is
    # why the pinned root's online keys and short timestamp expiry matter.
    await asyncio.to_thread(repo.client(tmp_path / "fresh").refresh)


async def test_refuses_older_snapshot_served_under_the_new_name(repo: Repo, tmp_path: Path) -> None:
    await repo.publish(PKG, b"v2")
    await repo.publish(PATCH, b"v3")
    repo.metadata_overrides["3.snapshot.json"] = await repo.metadata("2.snapshot.json")
    with pytest.raises(MISMATCH):
        await asyncio.to_thread(repo.client(tmp_path / "device").refresh)


async def test_refuses_snapshot_rollback_even_with_a_valid_timestamp(repo: Repo, tmp_path: Path) -> None:
    await repo.publish(PKG, b"v2")
    await repo.publish(PATCH, b"v3")
    await asyncio.to_thread(repo.client(tmp_path / "device").refresh)

    # An attacker holding the timestamp key points a newer timestamp at snapshot v2.
    forged = Metadata[Timestamp].from_bytes(await repo.metadata("timestamp.json"))
    forged.signed.version += 1
    forged.signed.snapshot_meta = (
        Metadata[Timestamp].from_bytes(await repo.metadata("2.timestamp.json")).signed.snapshot_meta
    )
    sign_with(forged, [repo.keys.online_signers["timestamp"]])
    repo.metadata_overrides["timestamp.json"] = forged.to_bytes(SERIALIZER)
    with pytest.raises(tuf_exc.BadVersionNumberError):
        await asyncio.to_thread(repo.client(tmp_path / "device").refresh)


async def test_refuses_targets_from_another_version(repo: Repo, tmp_path: Path) -> None:
    await repo.publish(PKG, b"v2")
    await repo.publish(PATCH, b"v3")
    repo.metadata_overrides["3.targets.json"] = await repo.metadata("2.targets.json")
    with pytest.raises(MISMATCH):
        await asyncio.to_thread(repo.client(tmp_path / "device").download, PATCH)


async def test_refuses_metadata_signed_by_an_untrusted_key(repo: Repo, tmp_path: Path) -> None:
    forged = Metadata[Timestamp].from_bytes(await repo.metadata("timestamp.json"))
    forged.signed.version += 1
    forged.signatures.clear()
    sign_with(forged, [CryptoSigner.generate_ecdsa()])
    repo.metadata_overrides["timestamp.json"] = forged.to_bytes(SERIALIZER)
    with pytest.raises(tuf_exc.UnsignedMetadataError):
        await asyncio.to_thread(repo.client(tmp_path / "device").refresh)


async def test_refuses_root_signed_only_by_its_new_keys(repo: Repo, tmp_path: Path) -> None:
    forged = Metadata[Root].from_bytes(repo.keys.root_metadata)
    attacker = CryptoSigner.generate_ecdsa()
    forged.signed.version = 2
    for keyid in list(forged.signed.roles["root"].keyids):
        forged.signed.revoke_key(keyid, "root")
    forged.signed.add_key(attacker.public_key, "root")
    forged.signatures.clear()
    sign_with(forged, [attacker])
    repo.metadata_overrides["2.root.json"] = forged.to_bytes(SERIALIZER)
    with pytest.raises(tuf_exc.UnsignedMetadataError):
        await asyncio.to_thread(repo.client(tmp_path / "device").refresh)
    with pytest.raises(InvalidMetadata):
        await repo.repo.publish_root(APP, forged.to_bytes(SERIALIZER))


async def test_refuses_expired_timestamp_when_the_clock_moves_on(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = repo.client(tmp_path / "device")
    await asyncio.to_thread(client.refresh)

    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1, minutes=1)
    freeze_client_clock(monkeypatch, later)
    with pytest.raises(tuf_exc.ExpiredMetadataError, match="timestamp"):
        await asyncio.to_thread(client.refresh)

    # The server's clock has moved too: a refreshed timestamp is accepted again.
    moved = TufRepository(repo.store, DirectoryKeyring(tmp_path / "online"), now=lambda: later)
    await moved.refresh_timestamp(APP)
    await asyncio.to_thread(client.refresh)


async def test_refuses_timestamp_signed_with_past_expiry(
    tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    keys = generate_app_keys(APP, tmp_path / "root.pem", tmp_path / "online")
    store = InMemoryMetadataStore()
    tuf = TufRepository(store, now=lambda: past)
    await tuf.init_repo(APP, keys.root_metadata, keys.online_signers.values())
    state = Repo(store, tuf, keys, CryptoSigner.generate_ecdsa())
    state.base_url = str((await aiohttp_server(make_repo_app(state))).make_url("")).rstrip("/")
    with pytest.raises(tuf_exc.ExpiredMetadataError):
        await asyncio.to_thread(state.client(tmp_path / "device").refresh)
