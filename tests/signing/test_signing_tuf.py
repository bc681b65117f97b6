"""TUF repository + the unmodified python-tuf ngclient, over a tiny HTTP server."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from securesystemslib.signer import CryptoSigner
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp
from tuf.ngclient._internal import trusted_metadata_set

from mpaas.signing.client import MpaasUpdateClient
from mpaas.signing.errors import (
    InvalidMetadata,
    InvalidTarget,
    MissingSigner,
    RepositoryExists,
    RepositoryNotFound,
    VersionConflict,
)
from mpaas.signing.keys import (
    AppKeys,
    DirectoryKeyring,
    generate_app_keys,
    generate_online_key,
    load_root_signers,
)
from mpaas.signing.signer import KeyRing, Signer
from mpaas.signing.tuf_repo import TargetSpec, TufRepository, check_target_name, target_path_on_disk
from mpaas.signing.tuf_root import SERIALIZER, Expiries, sign_with, utcnow
from mpaas.signing.tuf_store import InMemoryMetadataStore, parse_metadata_filename

APP = "bank"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Repo:
    """One app's repository, the bytes of its targets, and a server over both."""

    store: InMemoryMetadataStore
    repo: TufRepository
    keys: AppKeys
    root_signer: Signer
    blobs: dict[str, bytes] = field(default_factory=dict)
    metadata_overrides: dict[str, bytes] = field(default_factory=dict)
    target_overrides: dict[str, bytes] = field(default_factory=dict)
    base_url: str = ""

    async def publish(self, name: str, data: bytes, **custom: str) -> int:
        self.blobs[target_path_on_disk(name, sha(data))] = data
        return await self.repo.add_targets(APP, [TargetSpec(name, len(data), sha(data), custom)])

    def client(self, cache: Path, root: bytes | None = None) -> MpaasUpdateClient:
        return MpaasUpdateClient(
            f"{self.base_url}/metadata/",
            f"{self.base_url}/targets/",
            root if root is not None else self.keys.root_metadata,
            cache,
        )

    async def metadata(self, filename: str) -> bytes:
        raw = await self.store.get(APP, filename)
        assert raw is not None, filename
        return raw


def make_app(repo: Repo) -> web.Application:
    async def metadata(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        raw = repo.metadata_overrides.get(name)
        if raw is None:
            raw = await repo.store.get(APP, name)
        if raw is None:
            raise web.HTTPNotFound()
        return web.Response(body=raw, content_type="application/json")

    async def target(request: web.Request) -> web.Response:
        path = request.match_info["path"]
        raw = repo.target_overrides.get(path, repo.blobs.get(path))
        if raw is None:
            raise web.HTTPNotFound()
        return web.Response(body=raw, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/metadata/{name}", metadata)
    app.router.add_get("/targets/{path:.+}", target)
    return app


@pytest.fixture
async def repo(tmp_path: Path, aiohttp_server: Callable) -> Repo:
    keys = generate_app_keys(APP, tmp_path / "offline" / "root.pem", tmp_path / "online" / APP)
    store = InMemoryMetadataStore()
    tuf = TufRepository(store)
    await tuf.init_repo(APP, keys.root_metadata, keys.online_signers.values())
    (root_signer,) = load_root_signers(keys.root_key_paths)  # the offline key, as a ceremony loads it
    state = Repo(store, tuf, keys, root_signer)
    server = await aiohttp_server(make_app(state))
    state.base_url = str(server.make_url("")).rstrip("/")
    return state


PKG = "packages/offline/transfer/1.2.0/full.zip"
PATCH = f"packages/offline/transfer/1.2.0/delta-{'a' * 64}.patch"


# A swapped file fails the declared hash, or the declared length first when it is longer
# (ECDSA signatures vary in length by a byte or two).
MISMATCH = (tuf_exc.LengthOrHashMismatchError, tuf_exc.DownloadLengthMismatchError)


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


class _FrozenDatetime(dt.datetime):
    frozen: dt.datetime

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> _FrozenDatetime:
        return cls.frozen  # type: ignore[return-value]


async def test_refuses_expired_timestamp_when_the_clock_moves_on(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = repo.client(tmp_path / "device")
    await asyncio.to_thread(client.refresh)

    # ngclient reads "now" once, in TrustedMetadataSet.__init__: freeze that clock.
    _FrozenDatetime.frozen = dt.datetime.now(dt.UTC) + dt.timedelta(days=1, minutes=1)
    monkeypatch.setattr(
        trusted_metadata_set,
        "datetime",
        types.SimpleNamespace(datetime=_FrozenDatetime, timezone=dt.timezone),
    )
    with pytest.raises(tuf_exc.ExpiredMetadataError, match="timestamp"):
        await asyncio.to_thread(client.refresh)

    # The server's clock has moved too: a refreshed timestamp is accepted again.
    later = TufRepository(
        repo.store, DirectoryKeyring(tmp_path / "online"), now=lambda: _FrozenDatetime.frozen
    )
    await later.refresh_timestamp(APP)
    await asyncio.to_thread(client.refresh)


async def test_refuses_timestamp_signed_with_past_expiry(tmp_path: Path, aiohttp_server: Callable) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    keys = generate_app_keys(APP, tmp_path / "root.pem", tmp_path / "online")
    store = InMemoryMetadataStore()
    tuf = TufRepository(store, now=lambda: past)
    await tuf.init_repo(APP, keys.root_metadata, keys.online_signers.values())
    state = Repo(store, tuf, keys, CryptoSigner.generate_ecdsa())
    state.base_url = str((await aiohttp_server(make_app(state))).make_url("")).rstrip("/")
    with pytest.raises(tuf_exc.ExpiredMetadataError):
        await asyncio.to_thread(state.client(tmp_path / "device").refresh)


# ---------------------------------------------------------------- rotation


async def test_client_with_old_root_follows_online_and_root_rotations(repo: Repo, tmp_path: Path) -> None:
    await repo.publish(PKG, b"before rotation")
    client = repo.client(tmp_path / "device")
    await asyncio.to_thread(client.download, PKG)

    new_timestamp = generate_online_key(tmp_path / "online" / APP, "timestamp")
    assert await repo.repo.rotate_online_key(APP, "timestamp", new_timestamp, [repo.root_signer]) == 2
    root2 = Metadata[Root].from_bytes(await repo.metadata("2.root.json")).signed
    assert root2.roles["timestamp"].keyids == [new_timestamp.public_key.keyid]
    await asyncio.to_thread(client.refresh)

    new_targets = generate_online_key(tmp_path / "online" / APP, "targets", "ed25519")
    await repo.repo.rotate_online_key(APP, "targets", new_targets, [repo.root_signer])
    await repo.publish(PATCH, b"after targets rotation")

    new_root = CryptoSigner.generate_ecdsa()
    assert await repo.repo.rotate_root(APP, [repo.root_signer], [new_root]) == 4
    await repo.publish(PKG, b"after root rotation")

    # Every old root stays published, and a device that only knows root v1 catches up.
    for version in (1, 2, 3, 4):
        assert await repo.store.get(APP, f"{version}.root.json")
    assert (await asyncio.to_thread(repo.client(tmp_path / "new-device").download, PKG)).read_bytes() == (
        b"after root rotation"
    )
    await asyncio.to_thread(client.refresh)
    assert (await asyncio.to_thread(client.download, PATCH)).read_bytes() == b"after targets rotation"

    # The revoked timestamp key no longer convinces anyone.
    forged = Metadata[Timestamp].from_bytes(await repo.metadata("timestamp.json"))
    forged.signed.version += 1
    forged.signatures.clear()
    sign_with(forged, [repo.keys.online_signers["timestamp"]])
    repo.metadata_overrides["timestamp.json"] = forged.to_bytes(SERIALIZER)
    with pytest.raises(tuf_exc.UnsignedMetadataError):
        await asyncio.to_thread(client.refresh)

    # And the old root key alone can no longer sign a root.
    with pytest.raises(InvalidMetadata):
        await repo.repo.renew_root(APP, [repo.root_signer])
    assert await repo.repo.renew_root(APP, [new_root]) == 5


async def test_rotation_without_the_new_online_signer_commits_nothing(repo: Repo) -> None:
    stranger = CryptoSigner.generate_ecdsa()
    fresh = TufRepository(repo.store)  # knows no online keys at all
    with pytest.raises(MissingSigner):
        await fresh.rotate_online_key(APP, "snapshot", stranger, [repo.root_signer])
    assert repo.store.versions(APP, "root") == [1]


async def test_restarted_repository_finds_online_keys_on_disk(repo: Repo, tmp_path: Path) -> None:
    restarted = TufRepository(repo.store, DirectoryKeyring(tmp_path / "online"))
    await restarted.add_targets(APP, [TargetSpec(PKG, 3, sha(b"abc"))])
    new_snapshot = generate_online_key(tmp_path / "online" / APP, "snapshot")
    await repo.repo.rotate_online_key(APP, "snapshot", new_snapshot, [repo.root_signer])
    await TufRepository(repo.store, DirectoryKeyring(tmp_path / "online")).refresh_timestamp(APP)
    with pytest.raises(MissingSigner):
        await TufRepository(repo.store, KeyRing()).refresh_timestamp(APP)


async def test_offline_ceremony_root_is_published_as_is(repo: Repo, tmp_path: Path) -> None:
    root = Metadata[Root].from_bytes(repo.keys.root_metadata)
    root.signed.version = 2
    root.signed.expires = utcnow() + dt.timedelta(days=30)
    root.signatures.clear()
    sign_with(root, [repo.root_signer])
    assert await repo.repo.publish_root(APP, root.to_bytes(SERIALIZER)) == 2
    with pytest.raises(InvalidMetadata, match="expected root v3"):
        await repo.repo.publish_root(APP, root.to_bytes(SERIALIZER))
    await asyncio.to_thread(repo.client(tmp_path / "device").refresh)


async def test_root_threshold_two_of_three(tmp_path: Path) -> None:
    paths = [tmp_path / f"root{i}.pem" for i in range(3)]
    keys = generate_app_keys(APP, paths, tmp_path / "online", root_threshold=2)
    root = Metadata[Root].from_bytes(keys.root_metadata)
    assert root.signed.roles["root"].threshold == 2 and len(root.signatures) == 3
    repo = TufRepository(InMemoryMetadataStore())
    await repo.init_repo(APP, keys.root_metadata, keys.online_signers.values())
    signers = [
        CryptoSigner.from_priv_key_uri(f"file2:{p}", root.signed.keys[keyid])
        for p, keyid in zip(paths, root.signed.roles["root"].keyids, strict=True)
    ]
    with pytest.raises(InvalidMetadata):
        await repo.renew_root(APP, signers[:1])
    assert await repo.renew_root(APP, signers[1:]) == 2


# ---------------------------------------------------------------- concurrency and store


async def test_concurrent_publishers_never_reuse_a_version(
    repo: Repo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mpaas.signing.tuf_repo")
    publishers = [TufRepository(repo.store, DirectoryKeyring(tmp_path / "online")) for _ in range(2)]

    names = []
    for round_ in range(12):
        batch = [f"packages/p{i}/{round_}/full.zip" for i in range(len(publishers))]
        names += batch
        await asyncio.gather(
            *(
                p.add_targets(APP, [TargetSpec(name, 1, sha(name.encode()))])
                for p, name in zip(publishers, batch, strict=True)
            ),
            publishers[round_ % 2].refresh_timestamp(APP),
        )

    # The publishers really raced (and lost, and retried)...
    assert any("conflict" in record.getMessage() for record in caplog.records)
    # ...yet no update was lost, and every version of every role exists once, without gaps.
    assert sorted(await repo.repo.list_targets(APP)) == sorted(names)
    timestamps = repo.store.versions(APP, "timestamp")
    assert timestamps == list(range(1, 1 + 1 + 12 * 3))
    assert repo.store.versions(APP, "targets") == list(range(1, 1 + 1 + 12 * 2))
    assert repo.store.versions(APP, "snapshot") == repo.store.versions(APP, "targets")
    await asyncio.to_thread(repo.client(tmp_path / "device").refresh)


async def test_store_rejects_an_existing_version_atomically() -> None:
    store = InMemoryMetadataStore()
    await store.commit(APP, [("timestamp", 1, b"a")])
    with pytest.raises(VersionConflict):
        await store.commit(APP, [("snapshot", 1, b"s"), ("timestamp", 1, b"b")])
    assert await store.get(APP, "1.snapshot.json") is None
    assert await store.get(APP, "timestamp.json") == b"a"
    with pytest.raises(VersionConflict):
        await store.commit(APP, [("snapshot", 2, b"s"), ("snapshot", 2, b"t")])


async def test_repository_lifecycle_errors(repo: Repo) -> None:
    with pytest.raises(RepositoryExists):
        await repo.repo.init_repo(APP, repo.keys.root_metadata, repo.keys.online_signers.values())
    with pytest.raises(RepositoryNotFound):
        await repo.repo.refresh_timestamp("other")
    with pytest.raises(InvalidTarget):
        await repo.repo.add_targets(APP, [TargetSpec(PKG, 1, sha(b"x")), TargetSpec(PKG, 1, sha(b"y"))])


class _AlwaysConflicting(InMemoryMetadataStore):
    async def commit(self, app: str, writes: list[tuple[str, int, bytes]]) -> None:
        self.attempts = getattr(self, "attempts", 0) + 1
        if any(role == "targets" and version > 1 for role, version, _ in writes):
            raise VersionConflict("someone else always wins")
        await super().commit(app, writes)


async def test_gives_up_after_bounded_retries(tmp_path: Path) -> None:
    keys = generate_app_keys(APP, tmp_path / "root.pem", tmp_path / "online")
    store = _AlwaysConflicting()
    repo = TufRepository(store, max_attempts=3, retry_delay=0)
    await repo.init_repo(APP, keys.root_metadata, keys.online_signers.values())
    with pytest.raises(VersionConflict, match="3 attempts"):
        await repo.add_targets(APP, [TargetSpec(PKG, 1, sha(b"x"))])
    assert store.attempts == 1 + 3


@pytest.mark.parametrize(
    ("filename", "parsed"),
    [
        ("1.root.json", ("root", 1)),
        ("root.json", ("root", None)),
        ("timestamp.json", ("timestamp", None)),
        ("12.targets.json", ("targets", 12)),
        ("targets.json", None),
        ("0.root.json", None),
        ("01.root.json", None),
        ("1.mirrors.json", None),
        ("../1.root.json", None),
    ],
)
def test_metadata_filenames(filename: str, parsed: tuple[str, int | None] | None) -> None:
    assert parse_metadata_filename(filename) == parsed


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_metadata_filename_parser_never_crashes(name: str) -> None:
    parsed = parse_metadata_filename(name)
    if parsed is not None:
        role, version = parsed
        assert name == (f"{role}.json" if version is None else f"{version}.{role}.json")


def test_target_paths() -> None:
    digest = "ab" * 32
    assert target_path_on_disk(PKG, digest) == f"packages/offline/transfer/1.2.0/{digest}.full.zip"
    assert target_path_on_disk("top.zip", digest) == f"{digest}.top.zip"
    for bad in ("", "/abs", "a//b", "a/../b", "./a", "a/", "a\\b", "a\nb"):
        with pytest.raises(InvalidTarget):
            check_target_name(bad)
    with pytest.raises(InvalidTarget):
        target_path_on_disk(PKG, "AB" * 32)
    with pytest.raises(InvalidTarget):
        TargetSpec(PKG, -1, digest)
    with pytest.raises(InvalidTarget):
        TargetSpec(PKG, 1, digest, {"bad": float("nan")})


def test_expiries_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Expiries(timestamp=dt.timedelta(0))
    assert Expiries().for_role("snapshot") == dt.timedelta(days=7)


def test_unused_imports_are_real_types() -> None:
    assert Targets.type == "targets" and Snapshot.type == "snapshot"
