"""Migrations: they build the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from mpaas.app import import_all_models
from mpaas.settings import Settings
from mpaas.storage.db import make_engine, metadata
from mpaas.storage.migrate import current_heads, upgrade_async


def _diff(conn: Connection) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(ctx, metadata))


async def test_models_match_migrations(settings: Settings) -> None:
    import_all_models()
    await upgrade_async(settings)
    engine = make_engine(settings)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diff == [], "models and migrations disagree; write a migration"


def test_single_head() -> None:
    assert len(current_heads()) == 1, "migration history has branched; add a merge revision"


async def test_upgrade_is_idempotent(settings: Settings) -> None:
    """A second upgrade (every server start runs one) changes nothing: same head, same schema."""
    import_all_models()
    await upgrade_async(settings)
    await upgrade_async(settings)
    engine = make_engine(settings)
    try:
        async with engine.connect() as conn:
            heads = await conn.run_sync(lambda c: set(MigrationContext.configure(c).get_current_heads()))
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert heads == current_heads()
    assert diff == []
