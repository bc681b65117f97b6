"""Seeding an event store with the demo, once, and the 12 journeys as saved funnels."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from mpaas.analytics.demo.catalogue import JOURNEYS
from mpaas.analytics.demo.generator import DemoSpec, generate
from mpaas.analytics.loader.lock import WriterLock
from mpaas.analytics.reports.kinds import validate_saved
from mpaas.analytics.reports.saved import SavedReportNotFound, get_saved, save
from mpaas.analytics.runtime import store_path
from mpaas.analytics.store.base import EventStore
from mpaas.analytics.store.duckdb import DuckDbStore
from mpaas.identity.audit import Actor
from mpaas.settings import Settings
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.analytics")


@dataclass(frozen=True)
class Seeded:
    events: int  #: events written now (0: the store already held the demo)
    total: int  #: demo events of the app in the store


def demo_events(store: EventStore, app: str) -> int:
    """Demo events of ``app`` in the store (their message ids start with ``demo-<app>-``)."""
    rows = store.fetch(
        "SELECT count(*) FROM events WHERE app = ? AND starts_with(message_id, ?)", [app, f"demo-{app}-"]
    )
    return int(rows[0][0]) if rows else 0


def seed_store(store: EventStore, spec: DemoSpec) -> Seeded:
    """Write the demo's events in one load, unless the store already holds demo events of the app."""
    existing = demo_events(store, spec.app)
    if existing:
        return Seeded(0, existing)
    result = store.load(generate(spec).batch())
    return Seeded(result.inserted, result.inserted)


def journey_funnels(last_days: int = 30) -> list[tuple[str, str, dict[str, Any]]]:
    """The 12 core journeys as (saved report name, description, funnel parameters)."""
    return [
        (
            f"journey.{j.name}",
            f"{j.title}: {' → '.join(j.steps)}",
            {"steps": list(j.steps), "window_days": 14, "last_days": last_days},
        )
        for j in JOURNEYS
    ]


def claim_store(settings: Settings) -> WriterLock | None:
    """The event store's writer lock, if free: the demo holds it while it seeds, and the
    server's loader, which tries for it every few seconds, takes over afterwards."""
    lock = WriterLock(store_path(settings).with_suffix(".duckdb.lock"))
    return lock if lock.try_acquire() else None


def seed_events(settings: Settings, spec: DemoSpec, lock: WriterLock) -> Seeded:
    """The demo's events into the store (unless there already); releases ``lock``. Runs in a
    thread beside the starting server, so that ``mpaas demo`` answers at once."""
    try:
        store = DuckDbStore(store_path(settings), dedupe_days=settings.analytics_dedupe_days)
        try:
            seeded = seed_store(store, spec)
            store.checkpoint()
        finally:
            store.close()
    except Exception as exc:  # the demo still runs; say why its reports are empty
        log.warning("the demo's analytics events were not written", extra={"error": str(exc)[:200]})
        return Seeded(0, 0)
    finally:
        lock.release()
    log.info("demo analytics events written", extra={"events": seeded.events, "total": seeded.total})
    return seeded


async def save_journeys(db: Database, actor: Actor, app: str) -> int:
    """The 12 journeys as saved funnels, unless the app has them (a saved one is never
    overwritten: an analyst may have edited it). Returns how many were saved now."""
    saved = 0
    for name, description, params in journey_funnels():
        try:
            await get_saved(db, app, name)
        except SavedReportNotFound:
            await save(db, actor, app, name, "funnel", params, validate_saved, description=description)
            saved += 1
    return saved
