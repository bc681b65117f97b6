"""Alembic environment: runs migrations over the async engine chosen by settings."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from mpaas.app import import_all_models
from mpaas.settings import Settings
from mpaas.storage.db import make_engine, metadata

import_all_models()
config = context.config


def _do_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(settings: Settings) -> None:
    engine = make_engine(settings)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_do_run)
            await conn.commit()
    finally:
        await engine.dispose()


def run() -> None:
    connection: Any = config.attributes.get("connection")
    if connection is not None:
        _do_run(connection)
        return
    settings: Settings = config.attributes.get("settings") or Settings.from_env()
    asyncio.run(_run_async(settings))


run()
