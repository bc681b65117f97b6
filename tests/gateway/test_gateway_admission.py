"""Nonces and token buckets, the same rules in every store: SQL (SQLite, PostgreSQL) and Redis.

Time is the ``now`` argument, so refill is decided by the numbers, never by waiting.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pg_databases import PgDatabases
from sqlalchemy import text

from mpaas.gateway.admission import Admission, Bucket, Rate, SqlAdmission
from mpaas.gateway.redis_admission import RedisAdmission
from mpaas.settings import Settings
from mpaas.storage.db import Database
from mpaas.storage.migrate import upgrade_async

T0 = 1_800_000_000.0


@pytest.fixture(params=["sql-sqlite", "sql-postgres", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, pg_databases: PgDatabases | None
) -> AsyncIterator[Admission]:
    kind = str(request.param)
    if kind == "redis":
        url = os.environ.get("MPAAS_TEST_REDIS_URL")
        if not url:
            pytest.skip("MPAAS_TEST_REDIS_URL is not set")
        redis = RedisAdmission(url, f"mpaas-test-{secrets.token_hex(6)}:")
        yield redis
        await redis.close()
        return
    if kind == "sql-postgres":
        if pg_databases is None:
            pytest.skip("MPAAS_TEST_DATABASE_URL is not set")
        url = pg_databases.new(tmp_path / "tpl")
    else:
        url = f"sqlite:///{tmp_path / 'a.db'}"
    settings = Settings.from_env({}, {"data_dir": tmp_path, "database_url": url})
    if kind == "sql-sqlite":
        await upgrade_async(settings)
    db = Database(settings)
    yield SqlAdmission(db)
    await db.close()


def buckets(count: int = 3, per: float = 60.0) -> list[Bucket]:
    return [
        Bucket("rl:{bank}:app", "app", Rate(100, 1.0)),
        Bucket("rl:{bank}:dev:d1", "device", Rate(count, per)),
    ]


async def test_a_nonce_is_good_once_within_its_window(store: Admission) -> None:
    assert await store.claim("nonce:{bank}:d1:n1", T0 + 300, T0)
    assert not await store.claim("nonce:{bank}:d1:n1", T0 + 300, T0 + 10)
    assert await store.claim("nonce:{bank}:d1:n2", T0 + 300, T0 + 10)
    verdict = await store.admit("nonce:{bank}:d1:n1", T0 + 300, buckets(), T0 + 20)
    assert not verdict.fresh and not verdict.admitted


async def test_a_bucket_empties_refuses_and_refills_with_time(store: Admission) -> None:
    rate = Rate(3, 60.0)  # a token every 20 s
    verdicts = [await store.take(buckets(), T0 + i) for i in range(4)]
    assert [v.limited for v in verdicts] == [None, None, None, "device"]
    assert verdicts[3].retry_after == pytest.approx((1 - 3 / 60 * 3) / rate.refill, abs=0.01)
    assert (await store.take(buckets(), T0 + 3 + verdicts[3].retry_after + 0.01)).limited is None
    assert (await store.take(buckets(), T0 + 23.1)).limited == "device"
    assert (await store.take(buckets(), T0 + 10_000)).limited is None  # full again, capped at 3
    results = [await store.take(buckets(), T0 + 10_000) for _ in range(3)]
    assert [v.limited for v in results] == [None, None, "device"]


async def test_buckets_are_all_or_nothing(store: Admission) -> None:
    tight = [
        Bucket("rl:{bank}:user:u1", "user", Rate(1, 3600.0)),
        Bucket("rl:{bank}:op:x", "operation", Rate(5, 3600.0)),
    ]
    assert (await store.take(tight, T0)).limited is None
    for _ in range(3):
        assert (await store.take(tight, T0)).limited == "user"
    # the refused calls took nothing from the operation's bucket: 4 of its 5 tokens are left
    only_op = [tight[1]]
    assert [(await store.take(only_op, T0)).limited for _ in range(5)] == [
        None,
        None,
        None,
        None,
        "operation",
    ]


async def test_a_replay_draws_no_tokens_and_a_refused_call_spends_its_nonce(store: Admission) -> None:
    one = [Bucket("rl:{bank}:dev:d2", "device", Rate(1, 3600.0))]
    assert (await store.admit("nonce:{bank}:d2:a", T0 + 300, one, T0)).admitted
    refused = await store.admit("nonce:{bank}:d2:b", T0 + 300, one, T0)
    assert (refused.fresh, refused.limited) == (True, "device")
    assert not (await store.admit("nonce:{bank}:d2:b", T0 + 300, one, T0 + 100)).fresh
    assert (await store.admit("nonce:{bank}:d2:c", T0 + 4300, one, T0 + 4000)).admitted


async def test_expired_nonces_and_full_buckets_go_away(store: Admission) -> None:
    if isinstance(store, RedisAdmission):  # Redis expires the keys itself, on its own clock
        from redis.asyncio import Redis  # an independent client reads what the script wrote

        started = time.monotonic()
        assert await store.claim("nonce:{bank}:d3:old", T0 + 60, T0)
        assert (await store.take([Bucket("rl:{bank}:dev:d3", "device", Rate(2, 10.0))], T0)).admitted
        async with Redis.from_url(os.environ["MPAAS_TEST_REDIS_URL"]) as reader:
            ttl_nonce = await reader.pttl(store.prefix + "nonce:{bank}:d3:old")
            ttl_bucket = await reader.pttl(store.prefix + "rl:{bank}:dev:d3")
            assert await reader.hget(store.prefix + "rl:{bank}:dev:d3", "t") == b"1"
        # Each TTL was set in full and has run down by at most the time this test took (a busy
        # machine took over a second here once: the bounds follow the elapsed time, no window).
        waited = (time.monotonic() - started) * 1000 + 1
        assert 60_000 - waited < ttl_nonce <= 60_000
        assert 5000 - waited < ttl_bucket <= 6000  # set between 5 and 6 s
        return
    assert await store.claim("nonce:{bank}:d3:old", T0 + 1, T0)
    assert (await store.take([Bucket("rl:{bank}:dev:d3", "device", Rate(2, 10.0))], T0)).admitted
    await store.sweep(T0 + 100)
    async with store.db.session() as s:  # type: ignore[attr-defined]
        rows = (
            await s.exec(
                text("SELECT count(*) FROM gateway_nonces UNION ALL SELECT count(*) FROM gateway_buckets")
            )
        ).all()
    assert [r[0] for r in rows] == [0, 0]
