"""Start-up and shutdown of the gateway: keys, the admission store (Redis or SQL), the sweeper."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from mpaas.appkeys import DB, METRICS, SETTINGS
from mpaas.gateway.admission import Admission, Rate, SqlAdmission, sweep_forever
from mpaas.gateway.devices import device_register_operation
from mpaas.gateway.keys import KeyStore, MasterKey
from mpaas.gateway.metrics import GatewayMetrics
from mpaas.gateway.pipeline import Gateway, GatewayConfig
from mpaas.settings import Settings
from mpaas.storage.db import Database

GATEWAY = web.AppKey("gateway", Gateway)


def make_admission(settings: Settings, db: Database) -> Admission:
    """Redis when ``MPAAS_REDIS_URL`` is set, else the SQL database."""
    if settings.redis_url:
        from mpaas.gateway.redis_admission import RedisAdmission

        return RedisAdmission(settings.redis_url, settings.redis_prefix)
    return SqlAdmission(db)


def config_of(settings: Settings) -> GatewayConfig:
    return GatewayConfig(
        window=float(settings.gateway_clock_skew),
        max_body=settings.gateway_max_body_bytes,
        app_rate=Rate.parse(settings.gateway_app_rate),
        device_rate=Rate.parse(settings.gateway_device_rate),
        user_rate=Rate.parse(settings.gateway_user_rate),
    )


@contextlib.asynccontextmanager
async def gateway_context(app: web.Application) -> AsyncIterator[Gateway]:
    settings, db = app[SETTINGS], app[DB]
    master = await asyncio.to_thread(MasterKey.load_or_create, settings.keys_dir)
    keys = KeyStore(db, master, settings.gateway_cache_seconds)
    admission = make_admission(settings, db)
    gateway = Gateway(config_of(settings), keys, admission, metrics=GatewayMetrics(app[METRICS]))
    gateway.add_system(device_register_operation(keys))
    app[GATEWAY] = gateway
    sweeper = asyncio.create_task(sweep_forever(admission, lambda: gateway.clock()))
    try:
        yield gateway
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await admission.close()
