"""Releases: put packages on channels, steer their rollout, and count what clients report.

Every write runs in one transaction that also records an audit entry and bumps the
channel's row in ``release_epochs``; each server process polls those rows and
rebuilds its in-memory update index (:mod:`mpaas.packages.releases.update_index`), and the
writing process is told at once through :attr:`ReleaseService.listeners`.

:class:`ReleaseService` is one object for its callers, assembled from its concerns:
creating, promoting and listing releases here; rollout control in
:mod:`~mpaas.packages.releases.control`; client reports and counters in
:mod:`~mpaas.packages.releases.reports`; the shared write steps in
:mod:`~mpaas.packages.releases.base`.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import col, select

from mpaas.errors import ValidationError
from mpaas.identity.audit import Actor
from mpaas.identity.models import App, Channel
from mpaas.identity.tenancy import get_channel
from mpaas.packages.models import Package
from mpaas.packages.releases.control import RolloutControl
from mpaas.packages.releases.errors import ReleaseStateError
from mpaas.packages.releases.models import STATUSES, Release, ReleaseCounter
from mpaas.packages.releases.reports import StatusReports
from mpaas.packages.releases.rollout import check_whitelist, parse_rules, percent_to_bp
from mpaas.packages.releases.views import ReleaseSpec, ReleaseView, counter_dict
from mpaas.storage.db import utcnow


class ReleaseService(RolloutControl, StatusReports):
    async def create(self, app: App, actor: Actor, channel: str, spec: ReleaseSpec) -> ReleaseView:
        spec.validate()
        ref = await get_channel(self.db, app.name, channel)
        pkg = await self.packages.get(app, spec.kind, spec.package_id, spec.version)
        binary_range = spec.target_binary_range or pkg.meta.get("target_binary_range")
        assert ref.channel.id is not None and app.id is not None and pkg.id is not None
        row = Release(
            app_id=app.id,
            channel_id=ref.channel.id,
            kind=pkg.kind,
            package_id=pkg.package_id,
            seq=0,
            package_pk=pkg.id,
            target_binary_range=binary_range,
            mandatory=spec.mandatory,
            description=spec.description if spec.description is not None else pkg.meta.get("description", ""),
            starts_at=spec.starts_at or utcnow(),
            rollout_bp=percent_to_bp(spec.rollout_percent),
            whitelist=check_whitelist(spec.whitelist),
            rules=[r.text for r in parse_rules(spec.rules)],
            halt_failure_rate=spec.halt_failure_rate,
            halt_min_reports=spec.halt_min_reports,
            created_by=actor.name,
        )
        detail = {
            "version": pkg.version,
            "rollout": row.rollout_bp / 100,
            "rules": row.rules,
            "mandatory": row.mandatory,
        }
        await self._insert(app, actor, row, "release.create", detail)
        await self._package_channels_changed(app, row.package_pk)
        return ReleaseView(row, channel, pkg, {})

    async def promote(
        self,
        app: App,
        actor: Actor,
        release_id: int,
        to_channel: str,
        *,
        rollout: float | None = None,
        description: str | None = None,
        mandatory: bool | None = None,
    ) -> ReleaseView:
        """Release the same package on another channel, with the same settings unless given."""
        if description is not None and len(description) > 4000:
            raise ValidationError("description is longer than 4000 characters")
        view = await self.get(app, release_id)
        src = view.release
        if src.package_pk is None or src.status == "rolled_back":
            raise ReleaseStateError(
                f"release {release_id} is "
                f"{'embedded' if src.package_pk is None else src.status}; nothing to promote"
            )
        ref = await get_channel(self.db, app.name, to_channel)
        assert ref.channel.id is not None
        if ref.channel.id == src.channel_id:
            raise ReleaseStateError("a release cannot be promoted to its own channel")
        row = Release(
            app_id=src.app_id,
            channel_id=ref.channel.id,
            kind=src.kind,
            package_id=src.package_id,
            seq=0,
            package_pk=src.package_pk,
            target_binary_range=src.target_binary_range,
            mandatory=src.mandatory if mandatory is None else mandatory,
            description=src.description if description is None else description,
            rollout_bp=src.rollout_bp if rollout is None else percent_to_bp(rollout),
            whitelist=src.whitelist,
            rules=src.rules,
            promoted_from=src.id,
            halt_failure_rate=src.halt_failure_rate,
            halt_min_reports=src.halt_min_reports,
            created_by=actor.name,
        )
        detail = {"from": src.id, "channel": to_channel, "rollout": row.rollout_bp / 100}
        await self._insert(app, actor, row, "release.promote", detail)
        await self._package_channels_changed(app, row.package_pk)
        return ReleaseView(row, to_channel, view.package, {})

    # -- reads ---------------------------------------------------------------------

    async def list(
        self,
        app: App,
        *,
        channel: str | None = None,
        kind: str | None = None,
        package_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[ReleaseView], int]:
        query = (
            select(Release, Channel, ReleaseCounter, Package)
            .join(Channel, col(Channel.id) == col(Release.channel_id))
            .join(ReleaseCounter, col(ReleaseCounter.release_id) == col(Release.id))
            .outerjoin(Package, col(Package.id) == col(Release.package_pk))
            .where(Release.app_id == app.id)
        )
        if channel is not None:
            query = query.where(Channel.name == channel)
        if kind is not None:
            query = query.where(Release.kind == kind)
        if package_id is not None:
            query = query.where(Release.package_id == package_id)
        if status is not None:
            if status not in STATUSES:
                raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
            query = query.where(Release.status == status)
        count = select(func.count()).select_from(query.subquery())
        async with self.db.session() as s:
            total = (await s.exec(count)).one()
            rows = (await s.exec(query.order_by(col(Release.id).desc()).limit(limit).offset(offset))).all()
        return [ReleaseView(r, ch.name, p, counter_dict(c)) for r, ch, c, p in rows], int(total)
