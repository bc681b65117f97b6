"""Declaring tracking points: define (create or replace), list, show; and the loader's snapshot."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy import func
from sqlmodel import col, select

from mpaas.analytics.catalog.builtin import BUILTIN, OWNER, PREFIX
from mpaas.analytics.catalog.checker import CatalogSnapshot, Compiled, compile_definition
from mpaas.analytics.errors import EventNotDefined, InvalidDefinition
from mpaas.analytics.models import MODES, EventDefinition
from mpaas.identity.audit import Actor, record
from mpaas.identity.models import App
from mpaas.identity.tenancy import get_app
from mpaas.storage.db import Database, utcnow

#: Segment-style names are allowed ("Order Completed"), within reason.
NAME_RE = re.compile(r"[A-Za-z0-9$][A-Za-z0-9 _.:$-]{0,127}")
PATH_RE = re.compile(r"[A-Za-z0-9_$-]{1,64}(?:\.[A-Za-z0-9_$-]{1,64}){0,7}")


@dataclass(frozen=True)
class DefinitionSpec:
    name: str
    description: str
    properties_schema: dict[str, Any]
    owner: str
    mode: str
    pii_allowed: list[str]


def check_event_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise InvalidDefinition(
            f"event name {name[:140]!r} must be 1-128 letters, digits, spaces or _ . : $ -, "
            "starting with a letter, digit or $"
        )
    return name


def _text(data: dict[str, Any], key: str, limit: int) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidDefinition(f"{key} must be a string of at most {limit} characters")
    return value


def parse_spec(name: str, data: dict[str, Any]) -> DefinitionSpec:
    check_event_name(name)
    if name.startswith(PREFIX):
        raise InvalidDefinition(f"names starting with {PREFIX!r} are reserved for built-in UX events")
    mode = data.get("mode", "record")
    if mode not in MODES:
        raise InvalidDefinition(f"mode must be one of {', '.join(MODES)}")
    schema = data.get("properties_schema", data.get("schema")) or {}
    if not isinstance(schema, dict):
        raise InvalidDefinition("properties_schema must be a JSON Schema object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidDefinition(f"properties_schema is not a valid JSON Schema: {exc.message}") from None
    if schema.get("type", "object") != "object":
        raise InvalidDefinition('properties_schema must describe an object ("type": "object")')
    if mode == "reject" and not isinstance(schema.get("properties"), dict):
        raise InvalidDefinition("mode reject needs properties_schema.properties to know what is declared")
    allowed = data.get("pii_allowed") or []
    if not isinstance(allowed, list) or len(allowed) > 100:
        raise InvalidDefinition("pii_allowed must be a list of at most 100 property paths")
    for path in allowed:
        if not isinstance(path, str) or not PATH_RE.fullmatch(path):
            raise InvalidDefinition(
                f"pii_allowed entry {str(path)[:80]!r} is not a property path like a or a.b"
            )
    return DefinitionSpec(
        name=name,
        description=_text(data, "description", 4000),
        properties_schema=schema,
        owner=_text(data, "owner", 128),
        mode=mode,
        pii_allowed=sorted(set(allowed)),
    )


async def define(
    db: Database, actor: Actor, app_name: str, spec: DefinitionSpec
) -> tuple[EventDefinition, bool]:
    """Create or replace a definition; returns it and whether it is new. Audited."""
    app = await get_app(db, app_name)
    assert app.id is not None
    async with db.write() as s:
        query = select(EventDefinition).where(
            EventDefinition.app_id == app.id, EventDefinition.name == spec.name
        )
        row = (await s.exec(query)).first()
        created = row is None
        if row is None:
            row = EventDefinition(app_id=app.id, name=spec.name)
        row.description = spec.description
        row.properties_schema = spec.properties_schema
        row.owner = spec.owner
        row.mode = spec.mode
        row.pii_allowed = spec.pii_allowed
        row.updated_at = utcnow()
        row.updated_by = actor.name
        s.add(row)
        record(
            s,
            actor,
            "analytics.event.define",
            f"event:{app_name}/{spec.name}",
            app=app_name,
            detail={"mode": spec.mode, "created": created, "pii_allowed": spec.pii_allowed},
        )
    return row, created


async def list_definitions(
    db: Database, app_name: str, *, limit: int = 50, offset: int = 0
) -> tuple[list[EventDefinition], int]:
    app = await get_app(db, app_name)
    where = EventDefinition.app_id == app.id
    async with db.session() as s:
        total = (await s.exec(select(func.count()).select_from(EventDefinition).where(where))).one()
        query = select(EventDefinition).where(where).order_by(col(EventDefinition.name))
        rows = (await s.exec(query.limit(limit).offset(offset))).all()
    return list(rows), int(total)


async def get_definition(db: Database, app_name: str, name: str) -> dict[str, Any]:
    """A definition as a dict; built-in names answer their fixed definition."""
    if name in BUILTIN:
        await get_app(db, app_name)
        description, schema = BUILTIN[name]
        return builtin_dict(name, description, schema)
    app = await get_app(db, app_name)
    async with db.session() as s:
        query = select(EventDefinition).where(EventDefinition.app_id == app.id, EventDefinition.name == name)
        row = (await s.exec(query)).first()
    if row is None:
        raise EventNotDefined(f"event {name[:140]!r} is not defined for app {app_name!r}")
    return definition_dict(row, app_name)


def definition_dict(d: EventDefinition, app_name: str) -> dict[str, Any]:
    return {
        "app": app_name,
        "name": d.name,
        "description": d.description,
        "properties_schema": d.properties_schema,
        "owner": d.owner,
        "mode": d.mode,
        "pii_allowed": d.pii_allowed,
        "builtin": False,
        "updated_at": d.updated_at,
        "updated_by": d.updated_by,
    }


def builtin_dict(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "properties_schema": schema,
        "owner": OWNER,
        "mode": "warn",
        "pii_allowed": [],
        "builtin": True,
    }


def builtin_list() -> list[dict[str, Any]]:
    return [builtin_dict(name, description, schema) for name, (description, schema) in BUILTIN.items()]


async def load_snapshot(db: Database) -> CatalogSnapshot:
    """Every app's definitions, compiled, for one load cycle."""
    async with db.session() as s:
        rows = (await s.exec(select(EventDefinition, App).join(App))).all()
    compiled: dict[tuple[str, str], Compiled] = {}
    for d, app in rows:
        compiled[(app.name, d.name)] = compile_definition(d.mode, d.properties_schema, d.pii_allowed)
    return CatalogSnapshot(compiled)
