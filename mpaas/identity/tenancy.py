"""Apps, their platforms and channels, and the channels' deployment keys."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from mpaas.errors import Conflict, NotFound, ValidationError
from mpaas.identity.audit import Actor, record
from mpaas.identity.models import App, Channel
from mpaas.storage.db import Database

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
PLATFORMS = ("ios", "android")
DEFAULT_CHANNELS = ("staging", "production")


class AppNotFound(NotFound):
    code = "app_not_found"


class ChannelNotFound(NotFound):
    code = "channel_not_found"


@dataclass(frozen=True)
class ChannelRef:
    app: App
    channel: Channel


def check_name(kind: str, name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ValidationError(
            f"{kind} name {name!r} must be 1-63 lowercase letters, digits or '-', "
            "starting with a letter or digit"
        )
    return name


def new_deployment_key() -> str:
    return secrets.token_urlsafe(32)


async def create_app(
    db: Database, actor: Actor, name: str, platforms: list[str]
) -> tuple[App, list[Channel]]:
    check_name("app", name)
    platforms = sorted(set(platforms))
    if not platforms:
        raise ValidationError("an app needs at least one platform (ios, android)")
    bad = [p for p in platforms if p not in PLATFORMS]
    if bad:
        raise ValidationError(f"unknown platform {bad[0]!r}; choose from {', '.join(PLATFORMS)}")
    try:
        async with db.write() as s:
            app = App(name=name, platforms=platforms)
            s.add(app)
            await s.flush()
            assert app.id is not None
            channels = [
                Channel(app_id=app.id, name=c, deployment_key=new_deployment_key()) for c in DEFAULT_CHANNELS
            ]
            s.add_all(channels)
            record(s, actor, "app.create", f"app:{name}", app=name, detail={"platforms": platforms})
    except IntegrityError:
        raise Conflict(f"app {name!r} already exists", code="app_exists") from None
    return app, channels


async def list_apps(
    db: Database, *, limit: int = 50, offset: int = 0, only: tuple[str, ...] | None = None
) -> tuple[list[App], int]:
    """A page of apps by name; ``only`` limits it to those names (a scoped token's apps)."""
    from sqlalchemy import func

    query = select(App)
    if only is not None:
        query = query.where(col(App.name).in_(only))
    async with db.session() as s:
        total = (await s.exec(select(func.count()).select_from(query.subquery()))).one()
        rows = (await s.exec(query.order_by(col(App.name)).limit(limit).offset(offset))).all()
    return list(rows), int(total)


async def get_app(db: Database, name: str) -> App:
    async with db.session() as s:
        app = (await s.exec(select(App).where(App.name == name))).first()
    if app is None:
        raise AppNotFound(f"app {name!r} not found")
    return app


async def list_channels(db: Database, app_name: str) -> list[Channel]:
    app = await get_app(db, app_name)
    async with db.session() as s:
        return list(
            (await s.exec(select(Channel).where(Channel.app_id == app.id).order_by(col(Channel.id)))).all()
        )


async def get_channel(db: Database, app_name: str, channel: str) -> ChannelRef:
    app = await get_app(db, app_name)
    async with db.session() as s:
        row = (await s.exec(select(Channel).where(Channel.app_id == app.id, Channel.name == channel))).first()
    if row is None:
        raise ChannelNotFound(f"channel {channel!r} not found in app {app_name!r}")
    return ChannelRef(app, row)


async def create_channel(db: Database, actor: Actor, app_name: str, name: str) -> Channel:
    check_name("channel", name)
    app = await get_app(db, app_name)
    assert app.id is not None
    try:
        async with db.write() as s:
            row = Channel(app_id=app.id, name=name, deployment_key=new_deployment_key())
            s.add(row)
            record(s, actor, "channel.create", f"channel:{app_name}/{name}", app=app_name)
    except IntegrityError:
        raise Conflict(
            f"channel {name!r} already exists in app {app_name!r}", code="channel_exists"
        ) from None
    return row


async def rotate_deployment_key(db: Database, actor: Actor, app_name: str, name: str) -> Channel:
    ref = await get_channel(db, app_name, name)
    async with db.write() as s:
        row = await s.get(Channel, ref.channel.id)
        assert row is not None
        row.deployment_key = new_deployment_key()
        s.add(row)
        record(s, actor, "channel.rotate_key", f"channel:{app_name}/{name}", app=app_name)
    return row


async def resolve_deployment_key(db: Database, key: str) -> ChannelRef | None:
    """The (app, channel) a client's deployment key belongs to, or None."""
    if "\x00" in key:  # no key holds one, and PostgreSQL refuses it in text
        return None
    async with db.session() as s:
        row = (await s.exec(select(Channel, App).join(App).where(Channel.deployment_key == key))).first()
    if row is None:
        return None
    channel, app = row
    return ChannelRef(app, channel)


def channel_dict(c: Channel, app_name: str) -> dict[str, object]:
    return {"app": app_name, "name": c.name, "deployment_key": c.deployment_key, "created_at": c.created_at}


def app_dict(a: App) -> dict[str, object]:
    return {
        "name": a.name,
        "platforms": a.platforms,
        "require_signing": a.require_signing,
        "created_at": a.created_at,
    }
