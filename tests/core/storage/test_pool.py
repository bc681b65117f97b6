"""The PostgreSQL pool without pre-ping (ADR 0016): a connection the server closed is not handed out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text

from mpaas.settings import Settings
from mpaas.storage.db import Database


async def _backend(db: Database) -> tuple[int, Any]:
    """The server process behind the connection a session gets, and its asyncpg connection."""
    async with db.session() as s:
        conn = await s.connection()
        raw = await conn.get_raw_connection()
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        return int(pid), raw.driver_connection


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_connection_the_server_closed_is_replaced_on_checkout(settings: Settings) -> None:
    db = Database(settings)
    killer = Database(settings)
    try:
        first, pooled = await _backend(db)
        async with killer.session() as s:
            await s.connection()
            await (await s.connection()).execute(text(f"SELECT pg_terminate_backend({first})"))
        for _ in range(500):  # the server's goodbye reaches asyncpg on a later loop turn
            if pooled.is_closed():
                break
            await asyncio.sleep(0.01)
        assert pooled.is_closed()
        second, _ = await _backend(db)  # no error: the closed connection was dropped, not used
        assert second != first
    finally:
        await db.close()
        await killer.close()


async def _two_transaction_times(session: Any) -> tuple[Any, Any]:
    first = (await session.execute(text("SELECT now()"))).scalar_one()
    await asyncio.sleep(0.01)
    second = (await session.execute(text("SELECT now()"))).scalar_one()
    return first, second


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_reads_run_each_statement_alone_and_sessions_in_one_transaction(settings: Settings) -> None:
    """``Database.read()`` sends no BEGIN: each statement is its own transaction (now() moves);
    ``Database.session()`` keeps one transaction (now() stays)."""
    db = Database(settings)
    try:
        async with db.read() as s:
            first, second = await _two_transaction_times(s)
        assert second > first
        async with db.session() as s:
            first, second = await _two_transaction_times(s)
        assert second == first
        async with db.write() as s:  # a write after a read on the same pooled connection is atomic again
            first, second = await _two_transaction_times(s)
        assert second == first
    finally:
        await db.close()
