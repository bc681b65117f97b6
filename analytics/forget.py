"""PIPL's right to deletion: requests to forget a user, carried out by the store's writer.

``request`` records the request and its audit entry in one SQL transaction; the
process that holds the event store's writer lock picks pending requests up on its next
cycle, deletes the user's events and identity links, and marks the request done.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from mpaas.analytics.errors import AnalyticsError
from mpaas.analytics.models import ForgetRequest
from mpaas.analytics.store.base import Forget
from mpaas.errors import NotFound, ValidationError
from mpaas.identity.audit import Actor, record
from mpaas.identity.models import App
from mpaas.identity.tenancy import get_app
from mpaas.storage.db import Database, utcnow


class ForgetRequestNotFound(AnalyticsError, NotFound):
    code = "forget_request_not_found"


async def request(db: Database, actor: Actor, user_id: str, app_name: str | None) -> ForgetRequest:
    if not user_id or len(user_id) > 256:
        raise ValidationError("user_id must be 1-256 characters")
    app_id = None
    if app_name is not None:
        app_id = (await get_app(db, app_name)).id
    async with db.write() as s:
        row = ForgetRequest(app_id=app_id, user_id=user_id, requested_by=actor.name)
        s.add(row)
        await s.flush()
        # The user id itself is personal data: the audit log names the request only.
        record(s, actor, "analytics.forget", f"forget:{row.id}", app=app_name, detail={"request_id": row.id})
    return row


async def get(db: Database, request_id: int) -> dict[str, Any]:
    async with db.session() as s:
        found = (
            await s.exec(
                select(ForgetRequest, App).join(App, isouter=True).where(ForgetRequest.id == request_id)
            )
        ).first()
    if found is None:
        raise ForgetRequestNotFound(f"forget request {request_id} not found")
    row, app = found
    return request_dict(row, app.name if app is not None else None)


def request_dict(row: ForgetRequest, app_name: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "app": app_name,
        "requested_at": row.requested_at,
        "done": row.done_at is not None,
        "done_at": row.done_at,
        "events_deleted": row.events_deleted,
        "links_deleted": row.links_deleted,
    }


class SqlForgetQueue:
    """Pending requests from SQL, as the loader consumes them."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def pending(self) -> list[Forget]:
        async with self.db.session() as s:
            query = (
                select(ForgetRequest, App)
                .join(App, isouter=True)
                .where(col(ForgetRequest.done_at).is_(None))
                .order_by(col(ForgetRequest.id))
                .limit(100)
            )
            rows = (await s.exec(query)).all()
        return [
            Forget(int(r.id or 0), app.name if app is not None else None, r.user_id, r.requested_at)
            for r, app in rows
        ]

    async def done(self, request_id: int, events: int, links: int) -> None:
        async with self.db.write() as s:
            row = await s.get(ForgetRequest, request_id)
            if row is not None and row.done_at is None:
                row.done_at = utcnow()
                row.events_deleted, row.links_deleted = events, links
                s.add(row)
