"""Tables of the signing domain: the signed TUF metadata of every app, append-only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from mpaas.storage.db import utcnow


class TufMetadataRow(SQLModel, table=True):
    """One signed metadata file: ``(app, role, version)`` is written once, never updated.

    The unique constraint is what makes exactly one process win each new version when
    several publish at once (see ``mpaas.signing.tuf_repo``).
    """

    __tablename__ = "tuf_metadata"
    __table_args__ = (UniqueConstraint("app", "role", "version", name="uq_tuf_metadata_version"),)

    id: int | None = Field(default=None, primary_key=True)
    app: str = Field(max_length=64)
    role: str = Field(max_length=16)
    version: int = Field(sa_column=Column(BigInteger, nullable=False))
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
