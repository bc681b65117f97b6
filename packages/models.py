"""Tables of the packages domain: packages, their files and deltas, and upload sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from mpaas.storage.db import utcnow

KINDS = ("offline", "bundle", "hotfix")


class Package(SQLModel, table=True):
    """One published version of an offline package, bundle or hotfix patch."""

    __tablename__ = "packages"
    __table_args__ = (
        UniqueConstraint("app_id", "kind", "package_id", "version", name="uq_packages_identity"),
        Index("ix_packages_lineage", "app_id", "kind", "package_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="apps.id")
    kind: str = Field(max_length=16)
    package_id: str = Field(max_length=128)
    version: str = Field(max_length=64)
    package_hash: str = Field(max_length=64, index=True)
    codepush_hash: str = Field(max_length=64)
    archive_sha256: str = Field(max_length=64)
    archive_size: int = Field(sa_column=Column(BigInteger, nullable=False))
    manifest_sha256: str = Field(max_length=64)
    file_count: int
    total_size: int = Field(sa_column=Column(BigInteger, nullable=False))
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class PackageFile(SQLModel, table=True):
    """A file of a package; the bytes live once in the blob store under ``sha256``."""

    __tablename__ = "package_files"

    package_pk: int = Field(foreign_key="packages.id", primary_key=True)
    path: str = Field(max_length=1024, primary_key=True)
    sha256: str = Field(max_length=64, index=True)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))


class PackageDelta(SQLModel, table=True):
    """A patch that turns ``from_pk``'s files into ``to_pk``'s."""

    __tablename__ = "package_deltas"
    __table_args__ = (UniqueConstraint("to_pk", "from_pk", name="uq_package_deltas_pair"),)

    id: int | None = Field(default=None, primary_key=True)
    to_pk: int = Field(foreign_key="packages.id", index=True)
    from_pk: int = Field(foreign_key="packages.id")
    patch_sha256: str = Field(max_length=64)
    patch_size: int = Field(sa_column=Column(BigInteger, nullable=False))
    stats: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class UploadSession(SQLModel, table=True):
    """A resumable upload: chunks append to a temp file until ``received == size``."""

    __tablename__ = "upload_sessions"

    id: str = Field(primary_key=True, max_length=32)
    app_id: int = Field(foreign_key="apps.id")
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str | None = Field(default=None, max_length=64)
    received: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
