"""The queue's tables (SQLAlchemy Core, no ORM overhead), and the failure reasons it writes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.sql.base import Executable
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.push.models import PushDelivery, PushDevice, PushDeviceTag, PushMessage, PushReceipt


async def execute(session: AsyncSession, statement: Executable, params: Any = None) -> Any:
    """A Core statement on the session's connection (and transaction), without ORM overhead."""
    conn = await session.connection()
    if params is None:
        return await conn.execute(statement)
    return await conn.execute(statement, params)


def _table(model: type[SQLModel]) -> Table:
    return SQLModel.metadata.tables[str(model.__tablename__)]


DELIVERIES = _table(PushDelivery)
DEVICES = _table(PushDevice)
TAGS = _table(PushDeviceTag)
MESSAGES = _table(PushMessage)
RECEIPTS = _table(PushReceipt)

#: Failure reasons (``push_deliveries.reason`` when ``status = failed``).
EXPIRED, MAX_ATTEMPTS, DEVICE_DISABLED, SUPERSEDED = (
    "expired",
    "max_attempts",
    "device_disabled",
    "superseded",
)
#: Expanded onto a channel that no provider is configured for: nothing could send it.
NO_PROVIDER = "no_provider"
#: An APNs 410 older than the token's registration: the send failed, the token stays.
STALE_UNREGISTERED = "unregistered_stale"
