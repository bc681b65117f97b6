"""Cross-process mutual exclusion through the database.

``lock_row`` takes a row lock (``SELECT … FOR UPDATE``) on a named row of
``maintenance_locks`` for the rest of the caller's transaction. On SQLite, where
``FOR UPDATE`` does not exist, writers are already serialised (one writer at a time,
and an in-process lock in :class:`mpaas.storage.db.Database`), so the select is enough.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.storage.models import MaintenanceLock


async def lock_row(session: AsyncSession, name: str) -> None:
    query = select(MaintenanceLock).where(MaintenanceLock.name == name).with_for_update()
    if (await session.exec(query)).first() is not None:
        return
    try:
        async with session.begin_nested():
            session.add(MaintenanceLock(name=name))
            await session.flush()
    except IntegrityError:
        pass  # another transaction created it first
    await session.exec(query)
