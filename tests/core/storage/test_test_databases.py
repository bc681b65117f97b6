"""The test suite's own PostgreSQL databases (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from pg_databases import PgDatabases


async def test_a_template_can_be_made_inside_a_running_loop(tmp_path: Path) -> None:
    """Regression: the first PostgreSQL test of a worker may be async; Alembic must not need this loop."""
    url = os.environ.get("MPAAS_TEST_DATABASE_URL")
    if not url:
        pytest.skip("MPAAS_TEST_DATABASE_URL is not set")
    databases = PgDatabases(url)
    try:
        assert "/mpaas_t_" in databases.new(tmp_path)
        assert databases.ready
    finally:
        databases.drop_all()
    # the drops run in a process of their own: wait for it to have dropped both (the event)
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        give_up = time.monotonic() + 180  # a safety net against a hang, not a measure
        while await conn.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = ANY($1::text[])", databases.created
        ):
            assert time.monotonic() < give_up, "the test databases were not dropped"
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
