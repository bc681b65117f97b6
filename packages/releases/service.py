"""Releases: put packages on channels, steer their rollout, and count what clients report.

Every write runs in one transaction that also records an audit entry and bumps the
channel's row in ``release_epochs``; each server process polls those rows and
rebuilds its in-memory update index (:mod:`mpaas.packages.releases.update_index`), and the
writing process is told at once through :attr:`ReleaseService.listeners`.

Counters are only changed with ``UPDATE … SET n = n + k`` so concurrent reports
never lose a count; a report's event id is unique per app, so a retry counts once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.errors import ValidationError
from mpaas.identity.audit import Actor, record
from mpaas.identity.models import App, Channel
from mpaas.identity.tenancy import get_channel
from mpaas.packages.models import KINDS, Package
from mpaas.packages.releases.errors import (
    InvalidReport,
    NothingToRollBack,
    ReleaseConflict,
    ReleaseNotFound,
    ReleaseStateError,
)
from mpaas.packages.releases.models import STATUSES, Release, ReleaseCounter, ReleaseEpoch, ReleaseEvent
from mpaas.packages.releases.rollout import check_whitelist, parse_rules, percent_to_bp
from mpaas.packages.semver import check_range
from mpaas.packages.service import PackageService
from mpaas.storage.db import Database, utcnow

log = logging.getLogger("mpaas.releases")

ChannelHook = Callable[[App, Package, list[str]], Awaitable[None]]

AUTO_HALT_ACTOR = Actor("system:auto-halt")
COUNTER_FIELDS = (
    "checks",
    "downloads",
    "download_failures",
    "installs",
    "failures",
    "rollbacks",
    "active_devices",
)
#: Client report events and the counters they move (+1 each; active_devices may go -1).
EVENTS: dict[str, tuple[str, ...]] = {
    "download_started": (),
    "download_succeeded": ("downloads",),
    "download_failed": ("download_failures",),
    "install_succeeded": ("installs", "active_devices"),
    "install_failed": ("failures",),
    "rolled_back": ("rollbacks",),
}


@dataclass(frozen=True)
class ReleaseSpec:
    package_id: str
    version: str
    kind: str | None = None
    rollout_percent: float = 100.0
    rules: tuple[str, ...] = ()
    whitelist: Mapping[str, Any] | None = None
    mandatory: bool = False
    target_binary_range: str | None = None
    description: str | None = None
    starts_at: datetime | None = None
    halt_failure_rate: float = 0.2
    halt_min_reports: int = 50

    def validate(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValidationError(f"kind must be one of {', '.join(KINDS)}")
        percent_to_bp(self.rollout_percent)
        parse_rules(self.rules)
        check_whitelist(self.whitelist)
        if self.target_binary_range is not None:
            check_range(self.target_binary_range)
        if not 0 <= self.halt_failure_rate <= 1:
            raise ValidationError("halt_failure_rate must be between 0 and 1 (0 disables auto-halt)")
        if self.halt_min_reports < 1:
            raise ValidationError("halt_min_reports must be at least 1")
        if self.description is not None and len(self.description) > 4000:
            raise ValidationError("description is longer than 4000 characters")


@dataclass
class ReleaseView:
    """A release with what the API shows next to it."""

    release: Release
    channel: str
    package: Package | None
    counters: dict[str, int] = field(default_factory=dict)


def label_of(release: Release) -> str:
    return f"v{release.seq}"


def release_dict(view: ReleaseView, app_name: str, *, full: bool = False) -> dict[str, Any]:
    r, pkg, c = view.release, view.package, view.counters
    outcomes = c.get("installs", 0) + c.get("failures", 0)
    out: dict[str, Any] = {
        "id": r.id,
        "app": app_name,
        "channel": view.channel,
        "kind": r.kind,
        "package_id": r.package_id,
        "label": label_of(r),
        "version": pkg.version if pkg else None,
        "embedded": pkg is None,
        "package_hash": pkg.package_hash if pkg else None,
        "codepush_hash": pkg.codepush_hash if pkg else None,
        "size": pkg.archive_size if pkg else None,
        "target_binary_range": r.target_binary_range,
        "mandatory": r.mandatory,
        "description": r.description,
        "starts_at": r.starts_at,
        "rollout": r.rollout_bp / 100,
        "rules": r.rules,
        "whitelist": {k: len(v) for k, v in r.whitelist.items()},
        "status": r.status,
        "status_reason": r.status_reason,
        "rollback_of": r.rollback_of,
        "promoted_from": r.promoted_from,
        "auto_halt": {"failure_rate": r.halt_failure_rate, "min_reports": r.halt_min_reports},
        "counters": {k: c.get(k, 0) for k in COUNTER_FIELDS},
        "failure_rate": round(c.get("failures", 0) / outcomes, 4) if outcomes else None,
        "created_by": r.created_by,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    }
    if full:
        out["whitelist"] = r.whitelist
    return out


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


async def add_to_counters(session: AsyncSession, release_id: int, deltas: Mapping[str, int]) -> None:
    """``UPDATE release_counters SET a = a + x, … WHERE release_id = …``: never read-modify-write."""
    values = {name: getattr(ReleaseCounter, name) + n for name, n in deltas.items() if n}
    if values:
        await session.exec(
            update(ReleaseCounter).where(col(ReleaseCounter.release_id) == release_id).values(**values)
        )


class ReleaseService:
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

    async def rollback(
        self,
        app: App,
        actor: Actor,
        channel: str,
        kind: str,
        package_id: str,
        *,
        to_embedded: bool = False,
        mandatory: bool = False,
    ) -> ReleaseView:
        """Withdraw the newest live release of a lineage.

        It becomes ``rolled_back`` and a new release restores the previous live
        release's package (same audience and bucket seed), or, with
        ``to_embedded``, tells every device to run the version in its binary.
        Devices holding the withdrawn package get the new release whatever its rollout.
        """
        ref = await get_channel(self.db, app.name, channel)
        assert app.id is not None and ref.channel.id is not None
        try:
            async with self.db.write() as s:
                row = await self._rollback_in(
                    s, app, actor, ref.channel.id, channel, kind, package_id, to_embedded, mandatory
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

    async def promote(self, app: App, actor: Actor, release_id: int, to_channel: str) -> ReleaseView:
        """Release the same package on another channel, with the same settings."""
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
            mandatory=src.mandatory,
            description=src.description,
            rollout_bp=src.rollout_bp,
            whitelist=src.whitelist,
            rules=src.rules,
            promoted_from=src.id,
            halt_failure_rate=src.halt_failure_rate,
            halt_min_reports=src.halt_min_reports,
            created_by=actor.name,
        )
        await self._insert(app, actor, row, "release.promote", {"from": src.id, "channel": to_channel})
        await self._package_channels_changed(app, row.package_pk)
        return ReleaseView(row, to_channel, view.package, {})

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
        return ReleaseView(row, channel.name, pkg, _counter_dict(counters))

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
        return [ReleaseView(r, ch.name, p, _counter_dict(c)) for r, ch, c, p in rows], int(total)

    # -- client reports --------------------------------------------------------------

    async def report(
        self,
        app_id: int,
        release_id: int,
        event: str,
        event_id: str,
        *,
        device_id: str = "",
        previous_release_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> bool:
        """Count one client event; False when the event id was already counted."""
        if event not in EVENTS:
            raise InvalidReport(f"event must be one of {', '.join(EVENTS)}")
        if not event_id or len(event_id) > 128:
            raise InvalidReport("event_id must be 1-128 characters")
        halted: Release | None = None
        async with self.db.write() as s:
            release = (
                await s.exec(select(Release).where(Release.id == release_id, Release.app_id == app_id))
            ).first()
            if release is None:
                raise ReleaseNotFound(f"release {release_id} is unknown")
            try:
                async with s.begin_nested():
                    s.add(
                        ReleaseEvent(
                            app_id=app_id,
                            event_id=event_id,
                            release_id=release_id,
                            event=event,
                            device_id=device_id[:128],
                            detail=dict(detail or {}),
                        )
                    )
                    await s.flush()
            except IntegrityError:
                return False
            deltas = dict.fromkeys(EVENTS[event], 1)
            if event == "rolled_back":
                deltas["active_devices"] = -1
            await add_to_counters(s, release_id, deltas)
            if event == "install_succeeded" and previous_release_id not in (None, release_id):
                await s.exec(
                    update(ReleaseCounter)
                    .where(
                        col(ReleaseCounter.release_id) == previous_release_id,
                        col(ReleaseCounter.release_id).in_(
                            select(Release.id).where(Release.app_id == app_id)
                        ),
                    )
                    .values(active_devices=ReleaseCounter.active_devices - 1)
                )
            if event == "install_failed":
                halted = await self._maybe_halt(s, release)
        if halted is not None:
            log.warning("release auto-halted", extra={"release": halted.id, "reason": halted.status_reason})
            self._changed(halted.channel_id)
        return True

    async def _maybe_halt(self, s: AsyncSession, release: Release) -> Release | None:
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

    async def add_checks(self, counts: Mapping[int, int]) -> None:
        """Flush batched check counts in one executemany ``UPDATE … SET checks = checks + :n``.

        Rows are sorted by release id so concurrent flushers lock them in the same order.
        """
        rows = [{"rid": release_id, "n": n} for release_id, n in sorted(counts.items()) if n]
        if not rows:
            return
        statement = (
            update(ReleaseCounter)
            .where(col(ReleaseCounter.release_id) == bindparam("rid"))
            .values(checks=col(ReleaseCounter.checks) + bindparam("n"))
        )
        async with self.db.write() as s:
            # Core on the session's connection: a list of parameters is a plain executemany,
            # not the ORM's bulk update by primary key.
            connection = await s.connection()
            await connection.execute(statement, rows)


def _counter_dict(row: ReleaseCounter | None) -> dict[str, int]:
    return {k: int(getattr(row, k)) for k in COUNTER_FIELDS} if row is not None else {}
