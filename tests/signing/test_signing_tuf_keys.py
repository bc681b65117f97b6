"""A TUF repository's keys and versions: rotations a client follows, concurrent
publishers, the store, and the rules for names."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from securesystemslib.signer import CryptoSigner
from signing_support import APP, PATCH, PKG, Repo, sha
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, Root, Timestamp

from mpaas.signing.errors import (
    InvalidMetadata,
    InvalidTarget,
    MissingSigner,
    RepositoryExists,
    RepositoryNotFound,
    VersionConflict,
)
from mpaas.signing.keys import DirectoryKeyring, generate_app_keys, generate_online_key
from mpaas.signing.signer import KeyRing
from mpaas.signing.targets import TargetSpec, check_target_name, target_path_on_disk
from mpaas.signing.tuf_repo import TufRepository
from mpaas.signing.tuf_root import SERIALIZER, Expiries, sign_with, utcnow
from mpaas.signing.tuf_store import InMemoryMetadataStore, parse_metadata_filename

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
