"""The SQL metadata store and the TUF settings, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from mpaas.errors import ConfigError
from mpaas.settings import Settings
from mpaas.signing.db_store import DbMetadataStore
from mpaas.signing.errors import VersionConflict
from mpaas.storage.db import Database
from mpaas.storage.migrate import upgrade_async

APP = "bank"


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[DbMetadataStore]:
    await upgrade_async(settings)
    db = Database(settings)
    yield DbMetadataStore(db)
    await db.close()


async def test_commit_is_all_or_nothing(store: DbMetadataStore) -> None:
    await store.commit(APP, [("root", 1, b"r1"), ("timestamp", 1, b"t1")])
    with pytest.raises(VersionConflict):
        await store.commit(APP, [("snapshot", 2, b"s2"), ("timestamp", 1, b"t1-other")])
    assert await store.get(APP, "2.snapshot.json") is None
    assert await store.get(APP, "timestamp.json") == b"t1"
    with pytest.raises(VersionConflict):
        await store.commit(APP, [("snapshot", 3, b"a"), ("snapshot", 3, b"b")])
    assert await store.versions(APP, "snapshot") == []


async def test_latest_and_named_files(store: DbMetadataStore) -> None:
    assert await store.load_latest(APP, "timestamp") is None
    assert await store.apps() == []
    await store.commit(APP, [("root", 1, b"r1"), ("timestamp", 1, b"t1")])
    await store.commit(APP, [("root", 2, b"r2"), ("timestamp", 10, b"t10")])
    await store.commit(APP, [("timestamp", 9, b"t9")])  # out of order: latest is still 10
    await store.commit("other", [("timestamp", 50, b"o50")])
    assert await store.load_latest(APP, "timestamp") == b"t10"
    assert await store.get(APP, "timestamp.json") == b"t10"
    assert await store.get(APP, "root.json") == b"r2"
    assert await store.get(APP, "1.root.json") == b"r1"
    assert await store.get(APP, "9.timestamp.json") == b"t9"
    for bad in ("targets.json", "01.root.json", "../1.root.json", "3.root.json"):
        assert await store.get(APP, bad) is None
    assert await store.versions(APP, "timestamp") == [1, 9, 10]
    assert await store.apps() == [APP]


async def test_concurrent_commits_of_one_version_have_one_winner(store: DbMetadataStore) -> None:
    async def attempt(i: int) -> bool:
        try:
            await store.commit(APP, [("snapshot", 7, f"s{i}".encode()), ("timestamp", 7, f"t{i}".encode())])
        except VersionConflict:
            return False
        return True

    results = await asyncio.gather(*(attempt(i) for i in range(8)))
    assert results.count(True) == 1
    winner = results.index(True)
    assert await store.get(APP, "7.snapshot.json") == f"s{winner}".encode()
    assert await store.get(APP, "timestamp.json") == f"t{winner}".encode()


def test_tuf_settings_are_validated(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(tuf_root_threshold="2", tuf_key_type="ED25519")
    assert (s.tuf_root_threshold, s.tuf_key_type) == (2, "ed25519")
    with pytest.raises(ConfigError, match="TUF_KEY_TYPE"):
        make_settings(tuf_key_type="rsa")
    with pytest.raises(ConfigError, match="TUF_REFRESH_WITHIN_HOURS"):
        make_settings(tuf_timestamp_expiry_hours="6", tuf_refresh_within_hours="6")
    with pytest.raises(ConfigError, match="TUF_REFRESH_INTERVAL"):
        make_settings(tuf_refresh_within_hours="1", tuf_refresh_interval="3600")
    with pytest.raises(ConfigError, match="TUF_ROOT_THRESHOLD"):
        make_settings(tuf_root_threshold="0")
