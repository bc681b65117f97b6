"""The SQL :class:`~mpaas.signing.tuf_store.MetadataStore`: signed metadata in ``tuf_metadata``.

``commit`` inserts every file of one change in one transaction; the unique
(app, role, version) constraint turns a lost race into :class:`VersionConflict`, on
SQLite and PostgreSQL alike, and nothing of the losing change is kept.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from mpaas.signing.errors import VersionConflict
from mpaas.signing.models import TufMetadataRow
from mpaas.signing.tuf_root import ROOT
from mpaas.signing.tuf_store import Write, check_writes, parse_metadata_filename
from mpaas.storage.db import Database


class DbMetadataStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def load_latest(self, app: str, role: str) -> bytes | None:
        return await self._fetch(app, role, None)

    async def commit(self, app: str, writes: list[Write]) -> None:
        check_writes(writes)
        if not writes:
            return
        try:
            async with self._db.write() as session:
                session.add_all(
                    TufMetadataRow(app=app, role=role, version=version, data=data)
                    for role, version, data in writes
                )
        except IntegrityError:
            files = ", ".join(f"{role} v{version}" for role, version, _ in writes)
            raise VersionConflict(f"{app}: one of {files} already exists") from None

    async def get(self, app: str, filename: str) -> bytes | None:
        parsed = parse_metadata_filename(filename)
        if parsed is None:
            return None
        role, version = parsed
        return await self._fetch(app, role, version)

    async def _fetch(self, app: str, role: str, version: int | None) -> bytes | None:
        query = select(TufMetadataRow.data).where(TufMetadataRow.app == app, TufMetadataRow.role == role)
        if version is None:
            query = query.order_by(col(TufMetadataRow.version).desc()).limit(1)
        else:
            query = query.where(TufMetadataRow.version == version)
        async with self._db.session() as session:
            data = (await session.exec(query)).first()
        return None if data is None else bytes(data)

    async def versions(self, app: str, role: str) -> list[int]:
        """Every stored version of a role, ascending (diagnostics and tests)."""
        query = (
            select(TufMetadataRow.version)
            .where(TufMetadataRow.app == app, TufMetadataRow.role == role)
            .order_by(col(TufMetadataRow.version))
        )
        async with self._db.session() as session:
            return [int(v) for v in (await session.exec(query)).all()]

    async def apps(self) -> list[str]:
        """Apps that have a TUF repository (a version-1 root)."""
        query = (
            select(TufMetadataRow.app)
            .where(TufMetadataRow.role == ROOT, TufMetadataRow.version == 1)
            .order_by(col(TufMetadataRow.app))
        )
        async with self._db.session() as session:
            return list((await session.exec(query)).all())
