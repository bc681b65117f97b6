"""Saved reports: a name, a report kind and its parameters, per app (no HTTP here).

The parameters are stored as the API takes them (JSON), checked when saved by the same
parser that runs them, so a saved report always runs. Every write is audited.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from mpaas.analytics.reports.errors import InvalidReportParameter, ReportError
from mpaas.analytics.reports.models import SavedReport
from mpaas.errors import NotFound
from mpaas.identity.audit import Actor, record
from mpaas.identity.tenancy import get_app
from mpaas.storage.db import Database, utcnow

#: Saved report names: lower-case slugs, so they are easy to type in the CLI and URLs.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")
MAX_PARAMS_BYTES = 16_384

#: Checks a kind and its parameters (raises :class:`InvalidReportParameter`).
Validator = Callable[[str, Mapping[str, Any]], None]


class SavedReportNotFound(ReportError, NotFound):
    code = "saved_report_not_found"


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise InvalidReportParameter(
            f"saved report name {name[:140]!r}: 1-128 of a-z 0-9 _ . -, starting with a letter or digit"
        )
    return name


async def save(
    db: Database,
    actor: Actor,
    app_name: str,
    name: str,
    kind: str,
    params: Mapping[str, Any],
    validate: Validator,
    *,
    description: str = "",
) -> tuple[SavedReport, bool]:
    """Create or replace a saved report; returns it and whether it is new."""
    check_name(name)
    if len(description) > 1000:
        raise InvalidReportParameter("description: at most 1000 characters")
    if len(json.dumps(params)) > MAX_PARAMS_BYTES:
        raise InvalidReportParameter(f"params: at most {MAX_PARAMS_BYTES} bytes of JSON")
    stored = dict(params)
    validate(kind, stored)
    app = await get_app(db, app_name)
    assert app.id is not None  # a row read from the database has its id
    async with db.write() as s:
        query = select(SavedReport).where(SavedReport.app_id == app.id, SavedReport.name == name)
        row = (await s.exec(query)).first()
        created = row is None
        if row is None:
            row = SavedReport(app_id=app.id, name=name, kind=kind, created_by=actor.name)
        row.kind, row.params, row.description = kind, stored, description
        row.updated_at, row.updated_by = utcnow(), actor.name
        s.add(row)
        record(
            s,
            actor,
            "analytics.report.save",
            f"report:{app_name}/{name}",
            app=app_name,
            detail={"kind": kind, "created": created},
        )
    return row, created


async def get_saved(db: Database, app_name: str, name: str) -> SavedReport:
    app = await get_app(db, app_name)
    async with db.session() as s:
        query = select(SavedReport).where(SavedReport.app_id == app.id, SavedReport.name == name)
        row = (await s.exec(query)).first()
    if row is None:
        raise SavedReportNotFound(f"no saved report {name[:140]!r} for app {app_name!r}")
    return row


async def list_saved(
    db: Database, app_name: str, *, kind: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[SavedReport], int]:
    app = await get_app(db, app_name)
    where = [SavedReport.app_id == app.id]
    if kind is not None:
        where.append(SavedReport.kind == kind)
    async with db.session() as s:
        total = (await s.exec(select(func.count()).select_from(SavedReport).where(*where))).one()
        query = select(SavedReport).where(*where).order_by(col(SavedReport.name))
        rows = (await s.exec(query.limit(limit).offset(offset))).all()
    return list(rows), int(total)


async def delete(db: Database, actor: Actor, app_name: str, name: str) -> None:
    app = await get_app(db, app_name)
    async with db.write() as s:
        query = select(SavedReport).where(SavedReport.app_id == app.id, SavedReport.name == name)
        row = (await s.exec(query)).first()
        if row is None:
            raise SavedReportNotFound(f"no saved report {name[:140]!r} for app {app_name!r}")
        await s.delete(row)
        record(s, actor, "analytics.report.delete", f"report:{app_name}/{name}", app=app_name)


def saved_dict(row: SavedReport, app_name: str) -> dict[str, Any]:
    return {
        "app": app_name,
        "name": row.name,
        "kind": row.kind,
        "description": row.description,
        "params": row.params,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "updated_by": row.updated_by,
    }
