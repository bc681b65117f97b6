"""Rollout control: pause, resume, set the rollout, roll back, and auto-halt on failures.

Each change runs in one transaction with its audit entry and the channel's epoch bump
(:func:`~mpaas.packages.releases.base.bump_epoch`), as every release write does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.errors import ValidationError
from mpaas.identity.audit import Actor, record
from mpaas.identity.models import App
from mpaas.identity.tenancy import get_channel
from mpaas.packages.releases.base import ReleaseBase, bump_epoch
from mpaas.packages.releases.errors import (
    NothingToRollBack,
    ReleaseConflict,
    ReleaseNotFound,
    ReleaseStateError,
)
from mpaas.packages.releases.models import Release, ReleaseCounter
from mpaas.packages.releases.rollout import percent_to_bp
from mpaas.packages.releases.views import ReleaseView, label_of
from mpaas.storage.db import utcnow

AUTO_HALT_ACTOR = Actor("system:auto-halt")


class RolloutControl(ReleaseBase):
    async def _set(
        self,
        app: App,
        actor: Actor,
        release_id: int,
        action: str,
        allowed: tuple[str, ...],
        changes: dict[str, Any],
    ) -> ReleaseView:
        async with self.db.write() as s:
            row = await self._row(s, app, release_id, for_update=True)
            if row.status not in allowed:
                raise ReleaseStateError(
                    f"release {release_id} is {row.status}; "
                    f"{action.split('.')[-1]} needs {' or '.join(allowed)}"
                )
            before = {k: getattr(row, k) for k in changes}
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            s.add(row)
            await bump_epoch(s, row.channel_id)
            record(
                s,
                actor,
                action,
                f"release:{release_id}",
                app=app.name,
                detail={"before": before, "after": changes},
            )
        self._changed(row.channel_id)
        return await self.get(app, release_id)

    async def pause(self, app: App, actor: Actor, release_id: int) -> ReleaseView:
        changes = {"status": "paused", "status_reason": f"paused by {actor.name}"}
        return await self._set(app, actor, release_id, "release.pause", ("active", "halted"), changes)

    async def resume(self, app: App, actor: Actor, release_id: int) -> ReleaseView:
        changes = {"status": "active", "status_reason": ""}
        return await self._set(app, actor, release_id, "release.resume", ("paused", "halted"), changes)

    async def set_rollout(self, app: App, actor: Actor, release_id: int, percent: float) -> ReleaseView:
        changes = {"rollout_bp": percent_to_bp(percent)}
        return await self._set(
            app, actor, release_id, "release.set_rollout", ("active", "paused", "halted"), changes
        )

    async def patch(
        self,
        app: App,
        actor: Actor,
        release_id: int,
        *,
        description: str | None = None,
        mandatory: bool | None = None,
        rollout: float | None = None,
    ) -> ReleaseView:
        """Change a live release's description, mandatory flag or rollout (one audit entry)."""
        changes: dict[str, Any] = {}
        if description is not None:
            if len(description) > 4000:
                raise ValidationError("description is longer than 4000 characters")
            changes["description"] = description
        if mandatory is not None:
            changes["mandatory"] = mandatory
        if rollout is not None:
            changes["rollout_bp"] = percent_to_bp(rollout)
        if not changes:
            raise ValidationError("nothing to change: give description, mandatory or rollout")
        return await self._set(
            app, actor, release_id, "release.patch", ("active", "paused", "halted"), changes
        )

    async def channel_renamed(self, app: App, channel_id: int) -> None:
        """Re-sign the channel sets of what a renamed channel offers, and rebuild its index.

        A channel without releases has nothing signed and no index: it is left alone.
        """
        async with self.db.write() as s:
            pks = (
                await s.exec(
                    select(Release.package_pk)
                    .where(Release.channel_id == channel_id, col(Release.status) != "rolled_back")
                    .distinct()
                )
            ).all()
            if pks:
                await bump_epoch(s, channel_id)
        if not pks:
            return
        self._changed(channel_id)
        for pk in pks:
            await self._package_channels_changed(app, pk)

    async def infer_kind(self, app: App, channel_id: int, package_id: str) -> str:
        """The kind of ``package_id``'s releases on a channel, when there is only one."""
        async with self.db.session() as s:
            kinds = sorted(
                (
                    await s.exec(
                        select(Release.kind)
                        .where(Release.channel_id == channel_id, Release.package_id == package_id)
                        .distinct()
                    )
                ).all()
            )
        if not kinds:
            raise NothingToRollBack(f"{package_id} has no release on this channel to roll back")
        if len(kinds) > 1:
            raise ReleaseStateError(
                f"{package_id} is released as several kinds ({', '.join(kinds)}); pass --kind"
            )
        return kinds[0]

    async def rollback(
        self,
        app: App,
        actor: Actor,
        channel: str,
        kind: str | None,
        package_id: str,
        *,
        to_embedded: bool = False,
        mandatory: bool = False,
        to_release: int | None = None,
    ) -> ReleaseView:
        """Withdraw the newest live release of a lineage.

        It becomes ``rolled_back`` and a new release restores the previous live
        release's package (same audience and bucket seed), or ``to_release``'s (any
        earlier release of the lineage on the channel), or, with ``to_embedded``, tells
        every device to run the version in its binary. ``kind`` None: the lineage's
        only kind on the channel. Devices holding the withdrawn package get the new
        release whatever its rollout.
        """
        ref = await get_channel(self.db, app.name, channel)
        assert app.id is not None and ref.channel.id is not None
        if to_embedded and to_release is not None:
            raise ValidationError("give --to RELEASE_ID or --to-embedded, not both")
        if kind is None:
            kind = await self.infer_kind(app, ref.channel.id, package_id)
        try:
            async with self.db.write() as s:
                row = await self._rollback_in(
                    s,
                    app,
                    actor,
                    ref.channel.id,
                    channel,
                    kind,
                    package_id,
                    to_embedded,
                    mandatory,
                    to_release,
                )
        except IntegrityError:
            raise ReleaseConflict(
                "another release of this package was created at the same moment; retry"
            ) from None
        self._changed(row.channel_id)
        await self._package_channels_changed(app, row.package_pk)
        return ReleaseView(row, channel, await self._package(row.package_pk), {})

    async def _rollback_in(
        self,
        s: AsyncSession,
        app: App,
        actor: Actor,
        channel_id: int,
        channel: str,
        kind: str,
        package_id: str,
        to_embedded: bool,
        mandatory: bool,
        to_release: int | None = None,
    ) -> Release:
        assert app.id is not None
        rows = list(
            (
                await s.exec(
                    select(Release)
                    .where(
                        Release.channel_id == channel_id,
                        Release.kind == kind,
                        Release.package_id == package_id,
                        col(Release.status) != "rolled_back",
                    )
                    .order_by(col(Release.id).desc())
                    .with_for_update()
                )
            ).all()
        )
        if not rows or rows[0].package_pk is None:
            raise NothingToRollBack(f"{kind} {package_id} has no live release on {channel} to roll back")
        bad = rows[0]
        previous = next((r for r in rows[1:] if r.package_pk != bad.package_pk), None)
        if to_release is not None:
            previous = await self._rollback_target(s, bad, to_release)
        if previous is None and not to_embedded:
            raise NothingToRollBack(
                f"{kind} {package_id} has no earlier release on {channel}; use --to-embedded"
            )
        bad.status, bad.status_reason, bad.updated_at = (
            "rolled_back",
            f"rolled back by {actor.name}",
            utcnow(),
        )
        s.add(bad)
        source = None if to_embedded else previous
        row = Release(
            app_id=app.id,
            channel_id=channel_id,
            kind=kind,
            package_id=package_id,
            seq=0,
            package_pk=source.package_pk if source else None,
            target_binary_range=source.target_binary_range if source else bad.target_binary_range,
            mandatory=mandatory,
            description=f"rollback of {label_of(bad)}" + ("" if source else " to the embedded version"),
            rollout_bp=source.rollout_bp if source else 10_000,
            seed=source.seed if source else 0,
            whitelist=source.whitelist if source else {},
            rules=source.rules if source else [],
            rollback_of=bad.id,
            created_by=actor.name,
        )
        detail = {"rolled_back": bad.id, "to": "embedded" if source is None else source.id}
        await self._insert_in(s, app, actor, row, "release.rollback", detail)
        return row

    @staticmethod
    async def _rollback_target(s: AsyncSession, bad: Release, to_release: int) -> Release:
        """An earlier release of ``bad``'s lineage on its channel, with another package."""
        target = (
            await s.exec(
                select(Release).where(
                    Release.id == to_release,
                    Release.channel_id == bad.channel_id,
                    Release.kind == bad.kind,
                    Release.package_id == bad.package_id,
                )
            )
        ).first()
        lineage = f"{bad.kind} {bad.package_id}"
        if target is None or target.id is None or bad.id is None or target.id >= bad.id:
            raise ReleaseNotFound(
                f"release {to_release} is not an earlier release of {lineage} on this channel "
                "(see `mpaas releases history`)"
            )
        if target.package_pk is None or target.package_pk == bad.package_pk:
            raise ReleaseStateError(
                f"release {to_release} offers "
                f"{'the embedded version' if target.package_pk is None else 'the same package'}; "
                "choose another, or use --to-embedded"
            )
        return target


async def auto_halt(s: AsyncSession, release: Release) -> Release | None:
    """Halt an active release whose install failures crossed its threshold (in ``s``'s transaction).

    Returns the release when this call halted it, so the caller can tell the index.
    """
    if release.status != "active" or release.halt_failure_rate <= 0:
        return None
    counters = await s.get(ReleaseCounter, release.id, populate_existing=True)
    if counters is None:
        return None
    outcomes = counters.installs + counters.failures
    if outcomes < release.halt_min_reports or counters.failures / outcomes < release.halt_failure_rate:
        return None
    reason = (
        f"auto-halted: {counters.failures} of {outcomes} installs failed "
        f"({100 * counters.failures / outcomes:.1f}% >= {100 * release.halt_failure_rate:.1f}%)"
    )
    result = await s.exec(
        update(Release)
        .where(col(Release.id) == release.id, col(Release.status) == "active")
        .values(status="halted", status_reason=reason, updated_at=utcnow())
    )
    if not result.rowcount:
        return None
    await bump_epoch(s, release.channel_id)
    app = await s.get(App, release.app_id)
    record(
        s,
        AUTO_HALT_ACTOR,
        "release.auto_halt",
        f"release:{release.id}",
        app=app.name if app else None,
        detail={"failures": counters.failures, "outcomes": outcomes},
    )
    release.status, release.status_reason = "halted", reason
    return release
