"""Change counters other processes poll: ``operations`` and ``catalog:<app id>``.

Every change to operations or a catalogue bumps its counter in the same transaction;
each process polls the table every ``banking_poll_seconds`` and reloads what moved, so
an operation added or disabled through one process is served by all within that time.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.banking.models import BankEpoch
from mpaas.storage.db import Database


async def bump(s: AsyncSession, name: str) -> None:
    conn = await s.connection()
    await conn.execute(
        text(
            "INSERT INTO bank_epochs (name, epoch) VALUES (:n, 1) "
            "ON CONFLICT (name) DO UPDATE SET epoch = bank_epochs.epoch + 1"
        ),
        {"n": name},
    )


async def read_all(db: Database) -> dict[str, int]:
    async with db.read() as s:
        return {row.name: row.epoch for row in (await s.exec(select(BankEpoch))).all()}
