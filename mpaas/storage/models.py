"""Tables that belong to storage itself rather than to any domain."""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class MaintenanceLock(SQLModel, table=True):
    """Named rows that writers lock (SELECT … FOR UPDATE) to exclude each other across processes.

    Used, for example, so that blob garbage collection never deletes a blob that a
    publish in another process is about to reference.
    """

    __tablename__ = "maintenance_locks"

    name: str = Field(primary_key=True, max_length=64)
