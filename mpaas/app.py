"""The application factory: every backend is chosen and wired here, and only here.

This is the one core module that knows the domains (the dependency rule in
docs/architecture.md, enforced by tests/test_dependencies.py): it mounts their APIs,
starts their services, and names the modules that hold their tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web
from prometheus_client import CollectorRegistry

from mpaas.appkeys import BLOBS, DB, EDGE, GC_SOURCES, METRICS, SETTINGS
from mpaas.identity.guard import require_roles
from mpaas.logs import LogMetrics
from mpaas.ops.gc import GC_SWEEPERS
from mpaas.settings import Settings
from mpaas.storage.blobs import make_blob_store
from mpaas.storage.blobs.local import sweep_stale
from mpaas.storage.db import Database
from mpaas.web.api import Api
from mpaas.web.edge import Edge, HttpMetrics
from mpaas.web.openapi import API_KEY

log = logging.getLogger("mpaas")

#: Every module that defines tables, so that metadata is complete for Alembic's
#: autogenerate and the migration-drift test. Each domain adds its models here.
MODEL_MODULES = (
    "mpaas.storage.models",
    "mpaas.identity.models",
    "mpaas.packages.models",
    "mpaas.signing.models",
    "mpaas.packages.releases.models",
    "mpaas.push.models",
    "mpaas.analytics.models",
    "mpaas.gateway.models",
    "mpaas.banking.models",
    "mpaas.banking.ledger.models",
    "mpaas.banking.risk.models",
    "mpaas.banking.risk.modelcentre.models",
    "mpaas.analytics.reports.models",
    "mpaas.console.models",
)


def import_all_models() -> None:
    for name in MODEL_MODULES:
        importlib.import_module(name)


def domain_apis() -> list[Api]:
    """The APIs mounted by the app: core first, then one line per domain."""
    from mpaas.analytics.api import api as analytics
    from mpaas.analytics.reports.api import api as reports
    from mpaas.banking.api import api as banking
    from mpaas.banking.risk.api import api as risk
    from mpaas.banking.risk.modelcentre.api import api as risk_models
    from mpaas.console.api import api as console
    from mpaas.gateway.api import api as gateway
    from mpaas.identity.api import api as identity
    from mpaas.ops.api import api as ops
    from mpaas.packages.api import api as packages
    from mpaas.packages.protocols.api import api as release_clients
    from mpaas.packages.releases.api import api as releases
    from mpaas.push.admin_api import api as push_admin
    from mpaas.push.api import api as push
    from mpaas.signing.api import api as signing

    return [
        ops,
        identity,
        gateway,
        packages,
        signing,
        push,
        push_admin,
        releases,
        release_clients,
        banking,
        risk,
        risk_models,
        analytics,
        reports,
        console,
    ]


def create_app(settings: Settings) -> web.Application:
    registry = CollectorRegistry()
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[METRICS] = registry
    app[EDGE] = Edge(HttpMetrics(registry), settings.max_body_bytes)
    registry.register(LogMetrics())

    api = Api()
    for domain in domain_apis():
        api.extend(domain)
    api.register(app, app[EDGE], require_roles)
    app[EDGE].add_unmatched(app)
    app[API_KEY] = api

    app[GC_SOURCES] = []
    app[GC_SWEEPERS] = []
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_console)
    app.cleanup_ctx.append(_blob_store)
    app.cleanup_ctx.append(_packages)
    app.cleanup_ctx.append(_signing)
    app.cleanup_ctx.append(_releases)
    app.cleanup_ctx.append(_push)
    app.cleanup_ctx.append(_analytics)
    app.cleanup_ctx.append(_gateway)
    app.cleanup_ctx.append(_banking)
    if settings.ingest_port is not None:  # last in, so first out: closed before the spool
        app.cleanup_ctx.append(_ingest_listener)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.should_auto_migrate:
        from mpaas.storage.migrate import upgrade_async

        await upgrade_async(settings)
    db = Database(settings)
    app[DB] = db
    yield
    await db.close()


async def _console(app: web.Application) -> AsyncIterator[None]:
    """The web console's sessions, and its session cookie accepted by the admin API's guard."""
    from mpaas.console.wiring import console_context

    async with console_context(app):
        yield


async def _blob_store(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = make_blob_store(settings)
    app[BLOBS] = store
    # Temp files older than a day belong to writers that crashed (kill -9).
    for directory in (settings.tmp_dir, settings.data_dir / "blobs" / ".tmp"):
        await asyncio.to_thread(sweep_stale, directory, timedelta(days=1))
    yield
    await store.close()


async def _packages(app: web.Application) -> AsyncIterator[None]:
    from mpaas.packages.intake.unpack import IntakeLimits
    from mpaas.packages.intake.uploads import Uploads
    from mpaas.packages.service import PackageLimits, PackageService
    from mpaas.packages.service_key import PACKAGES

    s = app[SETTINGS]
    uploads = Uploads(app[DB], s.uploads_dir, max_size=s.max_upload_bytes, max_chunk=s.max_body_bytes)
    limits = PackageLimits(
        intake=IntakeLimits(
            max_entries=s.max_package_entries,
            max_total_bytes=s.max_package_bytes,
            max_ratio=s.max_compression_ratio,
        ),
        delta_bases=s.delta_bases,
        delta_max_share=s.delta_max_share,
    )
    service = PackageService(app[DB], app[BLOBS], uploads, s.tmp_dir, limits, s.publish_concurrency)
    app[PACKAGES] = service
    app[GC_SOURCES].extend(PackageService.referenced_query())
    app[GC_SWEEPERS].append(uploads.gc_sweep)
    await uploads.expire()
    sweeper = asyncio.create_task(uploads.run_sweeper())  # expired uploads, hourly
    yield
    sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper


async def _signing(app: web.Application) -> AsyncIterator[None]:
    """TUF signing of the packages' targets: a publish hook, and a maintenance task
    (re-sign before expiry, reconcile)."""
    from mpaas.packages.service_key import PACKAGES
    from mpaas.packages.tuf_targets import PackageTargets, publish_hook
    from mpaas.signing.config import SigningConfig
    from mpaas.signing.service import SigningService, stop_task
    from mpaas.signing.service_key import SIGNING

    config = SigningConfig.from_settings(app[SETTINGS])
    targets = PackageTargets(app[DB], app[BLOBS])
    service = SigningService(app[DB], config, targets)
    app[SIGNING] = service
    app[PACKAGES].hooks.append(publish_hook(service, targets))
    task = asyncio.create_task(service.run_maintenance()) if config.refresh_interval > 0 else None
    yield
    if task is not None:
        await stop_task(task)


async def _push(app: web.Application) -> AsyncIterator[None]:
    from mpaas.push.service import PushService
    from mpaas.push.service_key import PUSH
    from mpaas.push.settings_providers import build_providers, worker_config
    from mpaas.push.worker import PushWorker
    from mpaas.push.ws import WsHub

    s = app[SETTINGS]
    hub = WsHub(app[DB], poll_interval=s.push_poll_interval, heartbeat=s.push_ws_heartbeat)
    service = PushService(app[DB], hub)
    if s.push_worker:
        service.providers = build_providers(s)
        service.worker = PushWorker(app[DB], service.providers, worker_config(s), on_expanded=hub.poke)
    app[PUSH] = service
    await service.start()
    yield
    await service.stop()


async def _releases(app: web.Application) -> AsyncIterator[None]:
    """Releases and the update check: the in-memory index, its poller and the counter flusher."""
    from mpaas.packages.releases.wiring import releases_context

    async with releases_context(app):
        yield


async def _gateway(app: web.Application) -> AsyncIterator[None]:
    """The gateway core: keys, nonces and rate limits (Redis or SQL)."""
    from mpaas.gateway.wiring import gateway_context

    async with gateway_context(app):
        yield


async def _banking(app: web.Application) -> AsyncIterator[None]:
    """Banking: tiers, sessions, the operation registry (plugged into the gateway), the catalogue."""
    from mpaas.banking.wiring import banking_context

    async with banking_context(app):
        yield


async def _analytics(app: web.Application) -> AsyncIterator[None]:
    """Analytics: the event spool (files or JetStream) and, in one process, the loader."""
    from mpaas.analytics.emit import attached
    from mpaas.analytics.runtime import ANALYTICS, analytics_context

    # Then push and releases emit their server-side events into the runtime's spool.
    async with (
        analytics_context(app, app[SETTINGS], app[DB]),
        attached(app[DB], app[ANALYTICS], app[METRICS]),
    ):
        yield


async def _ingest_listener(app: web.Application) -> AsyncIterator[None]:
    """The ingest routes on their own lean listener (``MPAAS_INGEST_PORT``)."""
    from mpaas.analytics.ingest.listener import INGEST_SERVER, ingest_listener
    from mpaas.analytics.runtime import ANALYTICS

    async with ingest_listener(app[SETTINGS], app[ANALYTICS], app[EDGE].metrics) as server:
        app[INGEST_SERVER] = server
        yield
