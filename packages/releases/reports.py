"""Client status reports and check counts: the counters of each release.

Counters are only changed with ``UPDATE … SET n = n + k`` so concurrent reports
never lose a count; a report's event id is unique per app, so a retry counts once.
An install failure may auto-halt the release (:func:`~mpaas.packages.releases.control.auto_halt`).
Each counted report also goes to analytics as an ``update.reported`` server-side event,
in the background (:func:`report_event`): a refused spool never fails the report.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.analytics.emit import ServerEvent, server_events
from mpaas.identity.models import App, Channel
from mpaas.packages.models import Package
from mpaas.packages.releases.base import ReleaseBase
from mpaas.packages.releases.control import auto_halt
from mpaas.packages.releases.errors import InvalidReport, ReleaseNotFound
from mpaas.packages.releases.models import Release, ReleaseCounter, ReleaseEvent
from mpaas.storage.db import Database, utcnow

log = logging.getLogger("mpaas.releases")

#: Client report events and the counters they move (+1 each; active_devices may go -1).
EVENTS: dict[str, tuple[str, ...]] = {
    "download_started": (),
    "download_succeeded": ("downloads",),
    "download_failed": ("download_failures",),
    "install_succeeded": ("installs", "active_devices"),
    "install_failed": ("failures",),
    "rolled_back": ("rollbacks",),
}
#: Report events as ``update.reported`` statuses (and the stage that failed).
STATUSES: dict[str, tuple[str, str | None]] = {
    "download_succeeded": ("downloaded", None),
    "download_failed": ("failed", "download"),
    "install_succeeded": ("installed", None),
    "install_failed": ("failed", "install"),
    "rolled_back": ("rolled_back", None),
}


async def add_to_counters(session: AsyncSession, release_id: int, deltas: Mapping[str, int]) -> None:
    """``UPDATE release_counters SET a = a + x, … WHERE release_id = …``: never read-modify-write."""
    values = {name: getattr(ReleaseCounter, name) + n for name, n in deltas.items() if n}
    if values:
        await session.exec(
            update(ReleaseCounter).where(col(ReleaseCounter.release_id) == release_id).values(**values)
        )


class StatusReports(ReleaseBase):
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
                halted = await auto_halt(s, release)
        if halted is not None:
            log.warning("release auto-halted", extra={"release": halted.id, "reason": halted.status_reason})
            self._changed(halted.channel_id)
        report_event(self.db, release, event, event_id, device_id)
        return True

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


def report_event(db: Database, release: Release, event: str, event_id: str, device_id: str) -> None:
    """Hand a counted report to analytics as an ``update.reported`` event (in the background)."""
    events, status = server_events(db), STATUSES.get(event)
    if events is None or status is None:
        return
    at, release_id, channel_id, package_pk = utcnow(), release.id, release.channel_id, release.package_pk
    props: dict[str, Any] = {"release_id": release_id, "package_id": release.package_id, "kind": release.kind}
    props["status"] = status[0]
    if status[1] is not None:
        props["stage"] = status[1]

    async def build() -> list[ServerEvent]:
        async with db.session() as s:
            app, channel = (
                await s.exec(
                    select(App.name, Channel.name).where(Channel.id == channel_id, App.id == Channel.app_id)
                )
            ).one()
            version = None
            if package_pk is not None:
                version = (await s.exec(select(Package.version).where(Package.id == package_pk))).first()
        message_id = f"release:{release_id}:{event_id}"
        body = props | {"version": version or "", "channel": channel}
        return [ServerEvent(app, "update.reported", body, message_id, device_id or None, None, at)]

    events.submit(build)
