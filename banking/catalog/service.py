"""Catalogue versions per app, and the view of one for a tier, platform and app version.

Publishing validates the document, checks that every mini-program names a package
lineage of the app (a read-only query of the packages domain), and stores it as the
next version; versions are never edited. The view lists the operations the tier may
call (from the live registry), the mini-programs and the products that reach the user,
and carries an ETag over its exact bytes, so an unchanged view answers 304.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml
from pydantic import ValidationError as PydanticError
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

import mpaas.banking.epochs as epochs
from mpaas.banking.errors import InvalidCatalog
from mpaas.banking.models import BankCatalog
from mpaas.banking.operations.registry import OperationRegistry
from mpaas.banking.users.tiers import LEVELS
from mpaas.errors import Conflict
from mpaas.identity.audit import Actor, record
from mpaas.identity.tenancy import get_app
from mpaas.packages.models import Package
from mpaas.packages.semver import Version
from mpaas.storage.db import Database

MAX_YAML = 256 << 10


def parse_yaml(raw: bytes) -> Any:
    if len(raw) > MAX_YAML:
        raise InvalidCatalog(f"the catalogue is larger than {MAX_YAML} bytes")
    try:
        return yaml.safe_load(raw.decode())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise InvalidCatalog(f"the catalogue is not valid YAML{line}") from None


def parse_document(data: Any) -> Any:
    from mpaas.banking.catalog.document import CatalogDocument

    if not isinstance(data, dict):
        raise InvalidCatalog("the catalogue must be an object with mini_programs and products")
    try:
        return CatalogDocument.model_validate(data)
    except PydanticError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidCatalog(f"catalogue: {where}: {first['msg']}") from None


class CatalogService:
    def __init__(self, db: Database, registry: OperationRegistry) -> None:
        self.db, self.registry = db, registry
        self._current: dict[int, tuple[int, Any]] = {}
        self._epochs: dict[str, int] = {}

    async def sync(self, current: dict[str, int]) -> None:
        """Forget cached catalogues that another process has changed."""
        for name, epoch in current.items():
            if name.startswith("catalog:") and self._epochs.get(name) != epoch:
                self._current.pop(int(name.split(":", 1)[1]), None)
        self._epochs = dict(current)

    async def current(self, app_id: int) -> tuple[int, Any]:
        """(version, document) of the app's newest catalogue; version 0 is the empty one."""
        found = self._current.get(app_id)
        if found is None:
            async with self.db.session() as s:
                row = (
                    await s.exec(
                        select(BankCatalog)
                        .where(BankCatalog.app_id == app_id)
                        .order_by(col(BankCatalog.version).desc())
                        .limit(1)
                    )
                ).first()
            found = (row.version, parse_document(row.document)) if row else (0, parse_document({}))
            self._current[app_id] = found
        return found

    async def publish(self, actor: Actor, app: str, data: Any) -> tuple[int, Any]:
        doc = parse_document(data)
        app_row = await get_app(self.db, app)
        assert app_row.id is not None
        wanted = {(m.kind, m.id) for m in doc.mini_programs}
        if wanted:
            async with self.db.session() as s:
                have = set(
                    (
                        await s.exec(
                            select(Package.kind, Package.package_id)
                            .where(Package.app_id == app_row.id)
                            .distinct()
                        )
                    ).all()
                )
            lacking = sorted(wanted - {(k, p) for k, p in have})
            if lacking:
                kind, pid = lacking[0]
                raise InvalidCatalog(f"mini-program {pid!r}: app {app!r} has no {kind} package with that id")
        try:
            async with self.db.write() as s:
                latest = (
                    await s.exec(
                        select(func.max(BankCatalog.version)).where(BankCatalog.app_id == app_row.id)
                    )
                ).one()
                version = int(latest or 0) + 1
                s.add(
                    BankCatalog(
                        app_id=app_row.id,
                        version=version,
                        document=doc.model_dump(mode="json"),
                        created_by=actor.name,
                    )
                )
                await epochs.bump(s, f"catalog:{app_row.id}")
                record(s, actor, "catalog.publish", f"catalog:{app}/{version}", app=app)
        except IntegrityError:
            raise Conflict(
                "the catalogue was changed at the same time; retry", code="catalog_conflict"
            ) from None
        self._current[app_row.id] = (version, doc)
        return version, doc

    async def versions(self, app: str) -> list[dict[str, Any]]:
        app_row = await get_app(self.db, app)
        async with self.db.session() as s:
            rows = await s.exec(
                select(BankCatalog.version, BankCatalog.created_by, BankCatalog.created_at)
                .where(BankCatalog.app_id == app_row.id)
                .order_by(col(BankCatalog.version).desc())
            )
            return [{"version": v, "created_by": by, "created_at": at} for v, by, at in rows.all()]

    async def view(
        self, app_id: int, app: str, tier: str, platform: str | None, app_version: str | None
    ) -> tuple[dict[str, Any], str]:
        """The catalogue for this user, and its ETag (quoted)."""
        version, doc = await self.current(app_id)
        parsed = Version.parse(app_version) if app_version else None
        level = LEVELS[tier]
        operations = [
            {"name": s.name, "version": s.version, "session_required": s.session_required}
            for s in self.registry.all()
            if s.enabled and s.kind != "system" and s.min_level <= level
        ]
        body = {
            "app": app,
            "catalog_version": version,
            "tier": tier,
            "operations": operations,
            "mini_programs": [
                m.model_dump(include={"id", "kind", "title", "entry"})
                for m in doc.mini_programs
                if m.reaches(tier, platform, parsed)
            ],
            "products": [
                p.model_dump(include={"id", "title", "description"})
                for p in doc.products
                if p.reaches(tier, platform, parsed)
            ],
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return body, '"' + hashlib.sha256(canonical).hexdigest()[:32] + '"'
