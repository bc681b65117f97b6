"""What every release write shares: the epoch bump, the insert, listeners and channel hooks.

:class:`ReleaseBase` holds the service's collaborators and the steps that
:mod:`~mpaas.packages.releases.service` (create, promote, list),
:mod:`~mpaas.packages.releases.control` (pause, resume, rollout, rollback, auto-halt) and
:mod:`~mpaas.packages.releases.reports` (client reports, check counts) build on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.identity.audit import Actor, record
from mpaas.identity.models import App, Channel
from mpaas.packages.models import Package
from mpaas.packages.releases.errors import ReleaseConflict, ReleaseNotFound
from mpaas.packages.releases.models import Release, ReleaseCounter, ReleaseEpoch
from mpaas.packages.releases.views import ReleaseView, counter_dict, label_of
from mpaas.packages.service import PackageService
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.releases")

ChannelHook = Callable[[App, Package, list[str]], Awaitable[None]]


async def bump_epoch(session: AsyncSession, channel_id: int) -> None:
    """Move the channel's epoch inside the caller's transaction (creating its row once)."""
    result = await session.exec(
        update(ReleaseEpoch)
        .where(col(ReleaseEpoch.channel_id) == channel_id)
        .values(epoch=ReleaseEpoch.epoch + 1)
    )
    if result.rowcount:
        return
    try:
        async with session.begin_nested():
            await session.exec(insert(ReleaseEpoch).values(channel_id=channel_id, epoch=1))
    except IntegrityError:
        await session.exec(
            update(ReleaseEpoch)
            .where(col(ReleaseEpoch.channel_id) == channel_id)
            .values(epoch=ReleaseEpoch.epoch + 1)
        )


class ReleaseBase:
    def __init__(self, db: Database, packages: PackageService) -> None:
        self.db = db
        self.packages = packages
        #: Called with a channel id after a commit that changed its releases.
        self.listeners: list[Callable[[int], None]] = []
        #: Called after a package's set of channels changed, with that complete set
        #: (the signing domain signs it into the package's TUF targets).
        self.channel_hooks: list[ChannelHook] = []

    def _changed(self, channel_id: int) -> None:
        for listener in self.listeners:
            listener(channel_id)

    async def _package_channels_changed(self, app: App, package_pk: int | None) -> None:
        if package_pk is None or not self.channel_hooks:
            return
        async with self.db.session() as s:
            pkg = await s.get(Package, package_pk)
            names = (
                await s.exec(
                    select(Channel.name)
                    .join(Release, col(Release.channel_id) == col(Channel.id))
                    .where(Release.package_pk == package_pk, col(Release.status) != "rolled_back")
                    .distinct()
                )
            ).all()
        if pkg is None:
            return
        for hook in self.channel_hooks:
            try:
                await hook(app, pkg, sorted(names))
            except Exception:
                log.exception("a release channel hook failed", extra={"package": package_pk})

    # -- writes --------------------------------------------------------------------

    async def _insert(
        self, app: App, actor: Actor, row: Release, action: str, detail: dict[str, Any]
    ) -> None:
        try:
            async with self.db.write() as s:
                await self._insert_in(s, app, actor, row, action, detail)
        except IntegrityError:
            raise ReleaseConflict(
                "another release of this package was created at the same moment; retry"
            ) from None
        self._changed(row.channel_id)

    @staticmethod
    async def _insert_in(
        s: AsyncSession, app: App, actor: Actor, row: Release, action: str, detail: dict[str, Any]
    ) -> None:
        seq = (
            await s.exec(
                select(func.coalesce(func.max(Release.seq), 0)).where(
                    Release.channel_id == row.channel_id,
                    Release.kind == row.kind,
                    Release.package_id == row.package_id,
                )
            )
        ).one()
        row.seq = int(seq) + 1
        s.add(row)
        await s.flush()
        assert row.id is not None
        if not row.seed:
            row.seed = row.id
            s.add(row)
        s.add(ReleaseCounter(release_id=row.id))
        await bump_epoch(s, row.channel_id)
        record(s, actor, action, f"release:{row.id}", app=app.name, detail=detail | {"label": label_of(row)})

    # -- reads ---------------------------------------------------------------------

    async def _row(self, s: AsyncSession, app: App, release_id: int, *, for_update: bool = False) -> Release:
        query = select(Release).where(Release.id == release_id, Release.app_id == app.id)
        if for_update:
            query = query.with_for_update()
        row = (await s.exec(query)).first()
        if row is None:
            raise ReleaseNotFound(f"release {release_id} not found in app {app.name!r}")
        return row

    async def _package(self, pk: int | None) -> Package | None:
        if pk is None:
            return None
        async with self.db.session() as s:
            return await s.get(Package, pk)

    async def get(self, app: App, release_id: int) -> ReleaseView:
        async with self.db.session() as s:
            row = await self._row(s, app, release_id)
            channel = await s.get(Channel, row.channel_id)
            counters = await s.get(ReleaseCounter, release_id)
            pkg = await s.get(Package, row.package_pk) if row.package_pk is not None else None
        assert channel is not None
        return ReleaseView(row, channel.name, pkg, counter_dict(counters))
