"""Segment write keys per app: create, list, rotate. Only a key's sha256 is stored.

A write key is shown once, when it is made. Rotating makes a new key and lets the app's
current keys live on for a grace period (apps in the field still carry them), after
which they stop working; ``--grace 0`` ends them at once.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlmodel import col, select

from mpaas.analytics.errors import WriteKeyNotFound
from mpaas.analytics.models import WriteKey
from mpaas.errors import ValidationError
from mpaas.identity.audit import Actor, record
from mpaas.identity.tenancy import get_app
from mpaas.identity.tokens import hash_token
from mpaas.storage.db import Database, utcnow

MAX_GRACE = 365 * 86400


def new_write_key() -> str:
    return secrets.token_urlsafe(24)


def _label(label: str) -> str:
    if len(label) > 128:
        raise ValidationError("label must be at most 128 characters")
    return label


def _key_row(app_id: int, key: str, label: str, actor: Actor) -> WriteKey:
    """The row for a new key: only its hash and a short prefix are kept."""
    return WriteKey(
        app_id=app_id, key_hash=hash_token(key), prefix=key[:6], label=_label(label), created_by=actor.name
    )


async def create(db: Database, actor: Actor, app_name: str, label: str = "") -> tuple[WriteKey, str]:
    """A new write key for the app; returns the row and the key (shown once)."""
    app = await get_app(db, app_name)
    assert app.id is not None
    app_id = app.id
    key = new_write_key()
    async with db.write() as s:
        row = _key_row(app_id, key, label, actor)
        s.add(row)
        await s.flush()
        record(s, actor, "analytics.write_key.create", f"write_key:{row.id}", app=app_name)
    return row, key


async def list_keys(db: Database, app_name: str) -> list[WriteKey]:
    app = await get_app(db, app_name)
    async with db.session() as s:
        query = select(WriteKey).where(WriteKey.app_id == app.id).order_by(col(WriteKey.id))
        return list((await s.exec(query)).all())


async def rotate(
    db: Database, actor: Actor, app_name: str, *, grace_seconds: int, label: str = ""
) -> tuple[WriteKey, str, list[WriteKey]]:
    """A new key; the app's other keys expire after ``grace_seconds`` (sooner ones keep theirs)."""
    if not 0 <= grace_seconds <= MAX_GRACE:
        raise ValidationError(f"grace must be 0 to {MAX_GRACE} seconds")
    app = await get_app(db, app_name)
    assert app.id is not None
    app_id = app.id
    key = new_write_key()
    now = utcnow()
    until = now + timedelta(seconds=grace_seconds)
    async with db.write() as s:
        old = list((await s.exec(select(WriteKey).where(WriteKey.app_id == app.id))).all())
        if not old:
            raise WriteKeyNotFound(f"app {app_name!r} has no write key to rotate; create one first")
        for row in old:
            if row.expires_at is None or row.expires_at > until:
                row.expires_at = until
                s.add(row)
        new = _key_row(app_id, key, label, actor)
        s.add(new)
        await s.flush()
        record(
            s,
            actor,
            "analytics.write_key.rotate",
            f"write_key:{new.id}",
            app=app_name,
            detail={"grace_seconds": grace_seconds, "expiring": [r.id for r in old]},
        )
    return new, key, old


def key_dict(row: WriteKey, app_name: str, key: str | None = None) -> dict[str, Any]:
    expired = row.expires_at is not None and row.expires_at <= utcnow()
    out: dict[str, Any] = {
        "id": row.id,
        "app": app_name,
        "prefix": row.prefix,
        "label": row.label,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "expires_at": row.expires_at,
        "active": not expired,
    }
    if key is not None:
        out["write_key"] = key
    return out
