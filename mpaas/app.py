"""The application factory: every backend is chosen and wired here, and only here."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from mpaas.appkeys import BLOBS, DB, METRICS, SETTINGS
from mpaas.blobs import make_blob_store
from mpaas.db import Database
from mpaas.domains import domain_apis
from mpaas.http import Api
from mpaas.middleware import HttpMetrics, make_middleware
from mpaas.openapi import API_KEY
from mpaas.settings import Settings

log = logging.getLogger("mpaas")


def create_app(settings: Settings) -> web.Application:
    registry = CollectorRegistry()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[make_middleware(HttpMetrics(registry), settings.max_body_bytes)],
    )
    app[SETTINGS] = settings
    app[METRICS] = registry

    api = Api()
    for domain in domain_apis():
        api.extend(domain)
    api.register(app)
    app[API_KEY] = api

    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_blob_store)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.should_auto_migrate:
        from mpaas.migrate import upgrade_async

        await upgrade_async(settings)
    db = Database(settings)
    app[DB] = db
    yield
    await db.close()


async def _blob_store(app: web.Application) -> AsyncIterator[None]:
    store = make_blob_store(app[SETTINGS])
    app[BLOBS] = store
    yield
    await store.close()
