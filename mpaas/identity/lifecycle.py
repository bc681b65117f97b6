"""Changing and removing tenants: rename and delete apps and channels, an app's signing policy.

A delete removes only what identity owns (the app's channels and deployment keys).
Anything another domain keeps for the app or channel (packages, releases, devices,
write keys, ...) references it by a foreign key, so the database refuses the delete
and the caller gets a 409 that says to empty it first: a delete never loses history.
"""

from __future__ import annotations

from sqlalchemy import delete, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from mpaas.errors import Conflict, ValidationError
from mpaas.identity.audit import Actor, record
from mpaas.identity.models import ApiToken, App, Channel
from mpaas.identity.tenancy import check_name, get_app, get_channel
from mpaas.storage.db import Database

#: TUF repositories (the signing domain's table) are named after the app: clients fetch
#: ``/tuf/{app}/...`` and the online keys live in ``keys/{app}/``. A rename would orphan them,
#: so it is refused while the app has one. Read by name only: identity imports no domain.
_HAS_TUF_REPOSITORY = text("SELECT 1 FROM tuf_metadata WHERE app = :app LIMIT 1")


class InUse(Conflict):
    code = "in_use"


async def delete_app(db: Database, actor: Actor, name: str) -> App:
    app = await get_app(db, name)
    try:
        async with db.write() as s:
            await s.exec(delete(Channel).where(col(Channel.app_id) == app.id))
            row = await s.get(App, app.id)
            if row is not None:
                await s.delete(row)
            await s.flush()
            record(s, actor, "app.delete", f"app:{name}", app=name, detail={"platforms": app.platforms})
    except IntegrityError:
        raise InUse(
            f"app {name!r} still holds packages, releases, devices or other data; "
            "only an app with nothing in it can be deleted",
            code="app_in_use",
        ) from None
    return app


async def rename_app(db: Database, actor: Actor, name: str, new_name: str) -> App:
    check_name("app", new_name)
    app = await get_app(db, name)
    if new_name == name:
        return app
    try:
        async with db.write() as s:
            if (await s.exec(_HAS_TUF_REPOSITORY, params={"app": name})).first() is not None:  # type: ignore[call-overload]
                raise InUse(
                    f"app {name!r} has TUF keys: its repository, key files and clients' /tuf/{name}/ "
                    "URLs carry its name, so it cannot be renamed",
                    code="app_signed",
                )
            row = await s.get(App, app.id)
            assert row is not None
            row.name = new_name
            s.add(row)
            for token in (await s.exec(select(ApiToken).where(ApiToken.apps != None))).all():  # noqa: E711
                if token.apps and name in token.apps:
                    token.apps = [new_name if a == name else a for a in token.apps]
                    s.add(token)
            await s.flush()
            record(s, actor, "app.rename", f"app:{new_name}", app=new_name, detail={"from": name})
    except IntegrityError:
        raise Conflict(f"app {new_name!r} already exists", code="app_exists") from None
    return row


async def set_require_signing(db: Database, actor: Actor, name: str, required: bool) -> App:
    app = await get_app(db, name)
    async with db.write() as s:
        row = await s.get(App, app.id)
        assert row is not None
        before = row.require_signing
        row.require_signing = required
        s.add(row)
        record(
            s,
            actor,
            "app.update",
            f"app:{name}",
            app=name,
            detail={"require_signing": {"before": before, "after": required}},
        )
    return row


async def delete_channel(db: Database, actor: Actor, app_name: str, name: str) -> Channel:
    ref = await get_channel(db, app_name, name)
    try:
        async with db.write() as s:
            row = await s.get(Channel, ref.channel.id)
            if row is not None:
                await s.delete(row)
            await s.flush()
            record(s, actor, "channel.delete", f"channel:{app_name}/{name}", app=app_name)
    except IntegrityError:
        raise InUse(
            f"channel {name!r} of app {app_name!r} has releases; a channel with releases cannot be deleted",
            code="channel_in_use",
        ) from None
    return ref.channel


async def rename_channel(db: Database, actor: Actor, app_name: str, name: str, new_name: str) -> Channel:
    """Rename a channel; its deployment key and releases stay, so clients notice nothing."""
    check_name("channel", new_name)
    ref = await get_channel(db, app_name, name)
    if new_name == name:
        return ref.channel
    try:
        async with db.write() as s:
            row = await s.get(Channel, ref.channel.id)
            assert row is not None
            row.name = new_name
            s.add(row)
            await s.flush()
            detail = {"from": name}
            record(s, actor, "channel.rename", f"channel:{app_name}/{new_name}", app=app_name, detail=detail)
    except IntegrityError:
        raise Conflict(
            f"channel {new_name!r} already exists in app {app_name!r}", code="channel_exists"
        ) from None
    return row


def check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"field {name!r} must be a boolean")
    return value
