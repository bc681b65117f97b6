"""Admin routes of the push domain for release engineers: cancel a message, list devices.

Mounted next to :mod:`mpaas.push.api` by the app factory (``mpaas/app.py``'s ``domain_apis``).
A cancel stops what has not left yet: the message expands no further and its pending,
unclaimed deliveries end as ``failed`` with the reason ``cancelled``; sends a worker has
already claimed finish and are counted as they land.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import and_, func, update
from sqlmodel import col, select

from mpaas.appkeys import DB
from mpaas.errors import Conflict, ValidationError
from mpaas.identity import tenancy
from mpaas.identity.audit import Actor, record
from mpaas.identity.guard import actor_of
from mpaas.identity.models import App
from mpaas.push import devices, messages
from mpaas.push.errors import MessageNotFound
from mpaas.push.models import FAILED, PENDING, PROVIDERS, PushDelivery, PushDevice, PushDeviceTag, PushMessage
from mpaas.storage.db import Database, utcnow
from mpaas.web.api import ID_SCHEMA, PAGE_QUERY, Api, json_response, page, pagination, path_id, pattern_schema

api = Api()
OPS = ("push-operator",)
BASE = "/api/v1/apps/{app}/push"
#: Message states a cancel may leave; ``undeliverable`` and ``cancelled`` are final.
CANCELLABLE = ("scheduled", "expanding", "queued")
CANCELLED = "cancelled"


class MessageNotCancellable(Conflict):
    code = "message_not_cancellable"


async def cancel_message(db: Database, actor: Actor, app: App, message_id: int) -> tuple[PushMessage, int]:
    """Cancel a message; returns it and how many pending deliveries it withdrew."""
    now = utcnow()
    async with db.write() as s:
        row = (
            await s.exec(
                select(PushMessage)
                .where(PushMessage.id == message_id, PushMessage.app_id == app.id)
                .with_for_update()
            )
        ).first()
        if row is None:
            raise MessageNotFound(f"push message {message_id} not found")
        if row.status not in CANCELLABLE:
            raise MessageNotCancellable(f"push message {message_id} is {row.status}; nothing left to cancel")
        before = row.status
        row.status = CANCELLED
        s.add(row)
        result = await s.exec(
            update(PushDelivery)
            .where(
                and_(
                    col(PushDelivery.message_id) == message_id,
                    col(PushDelivery.status) == PENDING,
                    col(PushDelivery.claimed_by).is_(None),
                )
            )
            .values(status=FAILED, reason=CANCELLED, finished_at=now)
        )
        withdrawn = int(result.rowcount or 0)
        record(
            s,
            actor,
            "push.cancel",
            f"push_message:{message_id}",
            app=app.name,
            detail={"before": before, "withdrawn": withdrawn},
        )
    return row, withdrawn


@api.route(
    "POST",
    BASE + "/messages/{message_id}/cancel",
    summary="Cancel a push message: it expands no further and its unsent deliveries are withdrawn",
    tag="push",
    roles=OPS,
    params={"message_id": ID_SCHEMA},
    responses={409: "the message is already final"},
)
async def cancel_handler(request: web.Request) -> web.Response:
    db = request.app[DB]
    app = await tenancy.get_app(db, request.match_info["app"])
    row, withdrawn = await cancel_message(db, actor_of(request), app, path_id(request, "message_id"))
    return json_response(messages.message_dict(row, app.name) | {"withdrawn": withdrawn})


DEVICE_QUERY: dict[str, Any] = {
    "user": {"type": "string", "minLength": 1, "maxLength": 128},
    "tag": pattern_schema(devices.TAG_RE),
    "provider": {"enum": list(PROVIDERS)},
    "enabled": {"type": "boolean"},
    **PAGE_QUERY,
}


@api.route(
    "GET",
    BASE + "/devices",
    summary="List an app's registered devices (never their tokens or secrets)",
    tag="push",
    roles=OPS,
    query=DEVICE_QUERY,
)
async def list_devices_handler(request: web.Request) -> web.Response:
    db = request.app[DB]
    app = await tenancy.get_app(db, request.match_info["app"])
    limit, offset = pagination(request)
    q = request.query
    query = select(PushDevice).where(PushDevice.app_id == app.id)
    if "user" in q:
        query = query.where(PushDevice.user_id == q["user"])
    if "provider" in q:
        if q["provider"] not in PROVIDERS:
            raise ValidationError(f"provider must be one of {', '.join(PROVIDERS)}")
        query = query.where(PushDevice.provider == q["provider"])
    if "enabled" in q:
        if q["enabled"] not in ("true", "false"):
            raise ValidationError("enabled must be true or false")
        query = query.where(PushDevice.enabled == (q["enabled"] == "true"))
    if "tag" in q:
        if not devices.TAG_RE.fullmatch(q["tag"]):
            raise ValidationError("tag is not a valid tag")
        tagged = select(PushDeviceTag.device_pk).where(PushDeviceTag.tag == q["tag"])
        query = query.where(col(PushDevice.id).in_(tagged))
    async with db.session() as s:
        total = (await s.exec(select(func.count()).select_from(query.subquery()))).one()
        rows = list((await s.exec(query.order_by(col(PushDevice.id)).limit(limit).offset(offset))).all())
        pks = [r.id for r in rows]
        tags: dict[int, list[str]] = {}
        if pks:
            for pk, tag in (
                await s.exec(
                    select(PushDeviceTag.device_pk, PushDeviceTag.tag)
                    .where(col(PushDeviceTag.device_pk).in_(pks))
                    .order_by(col(PushDeviceTag.tag))
                )
            ).all():
                tags.setdefault(pk, []).append(tag)
    items = [devices.device_dict(d, tags.get(d.id or 0, [])) for d in rows]
    return json_response(page(items, int(total), limit, offset))
