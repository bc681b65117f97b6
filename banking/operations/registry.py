"""The operation registry: built-in, plug-in and upstream operations, and their switches.

Built-in and plug-in operations are registered in memory at start-up. Upstream
operations and every operation's on/off switch live in ``bank_operations``; a change
made through any process bumps the ``operations`` epoch, and each process reloads
within ``banking_poll_seconds`` (the process that made it, at once). So operations are
added and disabled with no restart. The registry is the gateway's
:class:`~mpaas.gateway.operation.OperationSource`: ``get`` is a dict lookup.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

import mpaas.banking.epochs as epochs
from mpaas.banking.errors import InvalidOperation, OperationExists, OperationNotFound
from mpaas.banking.models import BankOperation
from mpaas.banking.operations.declare import check_name, check_version, parse_rate
from mpaas.banking.operations.upstream import Upstreams
from mpaas.banking.users.tiers import VISITOR, check_tier
from mpaas.gateway.operation import OperationSpec
from mpaas.identity.audit import Actor, record
from mpaas.storage.db import Database, utcnow

log = logging.getLogger("mpaas.banking.operations")
EPOCH = "operations"
Key = tuple[str, int]


@dataclasses.dataclass(frozen=True)
class UpstreamFields:
    name: str
    version: int
    url: str
    input_schema: dict[str, Any]
    min_tier: str = "registered"
    session_required: bool = True
    rate: str | None = None
    idempotent: bool = False
    timeout_seconds: float | None = None
    summary: str = ""


class OperationRegistry:
    def __init__(self, db: Database, upstreams: Upstreams) -> None:
        self.db, self.upstreams = db, upstreams
        self._static: dict[Key, OperationSpec] = {}
        self.origins: dict[Key, str] = {}
        self.failed_plugins: list[str] = []
        self._rows: dict[Key, BankOperation] = {}
        self._built: dict[Key, tuple[object, OperationSpec]] = {}
        self._specs: dict[Key, OperationSpec] = {}
        self.epoch = -1

    # The gateway's view

    def get(self, name: str, version: int) -> OperationSpec | None:
        return self._specs.get((name, version))

    def all(self) -> list[OperationSpec]:
        return sorted(self._specs.values(), key=lambda s: (s.name, s.version))

    def origin(self, spec: OperationSpec) -> str:
        return self.origins.get((spec.name, spec.version), "upstream")

    # Start-up

    def add(self, spec: OperationSpec, origin: str) -> None:
        key = (spec.name, spec.version)
        if key in self._static:
            raise OperationExists(f"operation {spec.name} v{spec.version} is declared twice ({origin})")
        self._static[key], self.origins[key] = spec, origin
        self._rebuild()

    async def reload(self) -> None:
        epoch = (await epochs.read_all(self.db)).get(EPOCH, 0)
        async with self.db.session() as s:
            rows = (await s.exec(select(BankOperation))).all()
        self._rows = {(r.name, r.version): r for r in rows}
        self.epoch = epoch
        self._rebuild()

    async def sync(self, current: dict[str, int]) -> None:
        """Reload when the polled epochs show a change made by any process."""
        if current.get(EPOCH, 0) != self.epoch:
            await self.reload()

    def _rebuild(self) -> None:
        specs: dict[Key, OperationSpec] = {}
        for key, spec in self._static.items():
            row = self._rows.get(key)
            specs[key] = spec if row is None else dataclasses.replace(spec, enabled=row.enabled)
        for key, row in self._rows.items():
            if row.kind != "upstream" or key in self._static:
                continue
            stamp = (row.updated_at, row.enabled)
            built = self._built.get(key)
            if built is None or built[0] != stamp:
                try:
                    built = (stamp, self.upstreams.spec(row))
                except Exception:
                    log.exception("upstream operation could not be built", extra={"operation": row.name})
                    continue
                self._built[key] = built
            specs[key] = built[1]
        self._specs = specs

    # Changes (admin API and CLI)

    async def add_upstream(self, actor: Actor, f: UpstreamFields) -> OperationSpec:
        check_name(f.name)
        check_version(f.version)
        check_tier(f.min_tier)
        parse_rate(f.rate)
        if f.min_tier != VISITOR and not f.session_required:
            raise InvalidOperation(f"an operation for tier {f.min_tier} needs a session")
        url = urlsplit(f.url)
        if url.scheme not in ("http", "https") or not url.netloc or len(f.url) > 2048:
            raise InvalidOperation("the upstream URL must be an http(s) URL")
        if f.timeout_seconds is not None and not 0.01 <= f.timeout_seconds <= 300:
            raise InvalidOperation("timeout must be between 0.01 and 300 seconds")
        if (f.name, f.version) in self._static or f.name.startswith("mgs."):
            raise OperationExists(f"operation {f.name} v{f.version} is already declared in process")
        row = BankOperation(kind="upstream", created_by=actor.name, **dataclasses.asdict(f))
        self.upstreams.spec(row)  # the schema and the rest build before anything is stored
        try:
            async with self.db.write() as s:
                s.add(row)
                await epochs.bump(s, EPOCH)
                record(s, actor, "operation.add", f"operation:{f.name}/{f.version}", detail={"url": f.url})
        except IntegrityError:
            raise OperationExists(f"operation {f.name} v{f.version} already exists") from None
        await self.reload()
        found = self.get(f.name, f.version)
        assert found is not None
        return found

    async def set_enabled(self, actor: Actor, name: str, version: int, enabled: bool) -> OperationSpec:
        key = (name, version)
        if key not in self._static and key not in self._rows:
            await self.reload()
        if key not in self._static and key not in self._rows:
            raise OperationNotFound(f"operation {name} v{version} not found")
        async with self.db.write() as s:
            row = (
                await s.exec(
                    select(BankOperation).where(BankOperation.name == name, BankOperation.version == version)
                )
            ).first()
            if row is None:
                row = BankOperation(name=name, version=version, kind="switch", created_by=actor.name)
            row.enabled, row.updated_at = enabled, utcnow()
            s.add(row)
            await epochs.bump(s, EPOCH)
            action = "operation.enable" if enabled else "operation.disable"
            record(s, actor, action, f"operation:{name}/{version}")
        await self.reload()
        found = self.get(name, version)
        assert found is not None
        return found

    async def remove_upstream(self, actor: Actor, name: str, version: int) -> None:
        async with self.db.write() as s:
            row = (
                await s.exec(
                    select(BankOperation).where(
                        BankOperation.name == name,
                        BankOperation.version == version,
                        col(BankOperation.kind) == "upstream",
                    )
                )
            ).first()
            if row is None:
                raise OperationNotFound(f"no upstream operation {name} v{version}")
            await s.delete(row)
            await epochs.bump(s, EPOCH)
            record(s, actor, "operation.remove", f"operation:{name}/{version}")
        self._built.pop((name, version), None)
        await self.reload()

    def row(self, name: str, version: int) -> BankOperation | None:
        return self._rows.get((name, version))


def spec_dict(registry: OperationRegistry, spec: OperationSpec, *, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": spec.name,
        "version": spec.version,
        "kind": spec.kind,
        "origin": registry.origin(spec),
        "enabled": spec.enabled,
        "min_tier": spec.min_tier,
        "session_required": spec.session_required,
        "rate": str(spec.rate) if spec.rate else None,
        "idempotent": spec.idempotent,
        "summary": spec.summary,
    }
    if detail:
        out["input_schema"] = spec.input.model_json_schema()
        out["output_schema"] = spec.output.model_json_schema() if spec.output else None
        row = registry.row(spec.name, spec.version)
        if row is not None and row.kind == "upstream":
            out["input_schema"] = row.input_schema  # as declared
            out["url"] = row.url
            out["timeout_seconds"] = row.timeout_seconds
            out["breaker"] = registry.upstreams.breaker(spec.name, spec.version).snapshot()
    return out
