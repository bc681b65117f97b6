"""Start-up of the banking domain: plug-ins, the registry, the catalogue, and the poller.

The gateway (core) is already running; this plugs the registry in as its operation
source and the session store as its session resolver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

import mpaas.banking.epochs as epochs
from mpaas.appkeys import DB, METRICS, SETTINGS
from mpaas.banking.catalog.service import CatalogService
from mpaas.banking.errors import OperationExists
from mpaas.banking.operations.builtin import builtin_operations
from mpaas.banking.operations.plugins import load_plugins
from mpaas.banking.operations.registry import OperationRegistry
from mpaas.banking.operations.upstream import Upstreams
from mpaas.banking.service import BANKING, Banking, Clock
from mpaas.banking.transfers.operations import transfer_operations
from mpaas.banking.transfers.wiring import make_transfers, sweep_forever
from mpaas.banking.users.codes import OneTimeCodes
from mpaas.banking.users.providers import make_sms_provider, make_verifier
from mpaas.banking.users.service import UserService
from mpaas.banking.users.sessions import SessionStore
from mpaas.gateway.wiring import GATEWAY
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.banking")


@contextlib.asynccontextmanager
async def banking_context(app: web.Application) -> AsyncIterator[Banking]:
    settings, db, gateway = app[SETTINGS], app[DB], app[GATEWAY]
    master = gateway.keys.master
    clock = Clock()
    sessions = SessionStore(db, settings.banking_session_days, clock)
    sms = make_sms_provider(settings)
    codes = OneTimeCodes(db, gateway.admission, sms, master.derive("one-time-code"), clock)
    verifier = make_verifier(settings)
    users = UserService(db, sessions, codes, verifier, master.derive("identity"))
    upstreams = Upstreams(
        master,
        timeout=settings.gateway_upstream_timeout,
        retries=settings.gateway_upstream_retries,
        breaker_failures=settings.gateway_breaker_failures,
        breaker_reset=settings.gateway_breaker_reset_seconds,
        clock=clock,
    )
    registry = OperationRegistry(db, upstreams)
    catalog = CatalogService(db, registry)
    banking = Banking(clock, sms, verifier, sessions, codes, users, upstreams, registry, catalog)
    banking.transfers = transfers = await make_transfers(settings, db, codes, clock, app[METRICS])
    for declared in builtin_operations(banking) + transfer_operations(banking, transfers):
        registry.add(declared.spec("built-in"), "mpaas")
    loaded, failed = load_plugins()
    registry.failed_plugins = failed
    for item in loaded:
        try:
            registry.add(item.declared.spec(), item.origin)
        except OperationExists as exc:
            log.error("operation plug-in skipped", extra={"plugin": item.origin, "error": exc.message})
            registry.failed_plugins.append(f"{item.origin}: {exc.message}")
    await registry.reload()
    gateway.operations, gateway.sessions = registry, sessions
    app[BANKING] = banking
    poller = asyncio.create_task(_poll(banking, db, settings.banking_poll_seconds))
    sweeper = asyncio.create_task(sweep_forever(transfers, settings.banking_sweep_seconds))
    try:
        yield banking
    finally:
        for task in (poller, sweeper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await transfers.clearing.close()
        await transfers.close()  # the driver's SQLite connection and thread
        close_risk = getattr(transfers.risk, "close", None)  # the CEL engine: shadow work, lanes
        if close_risk is not None:
            await close_risk()
        await upstreams.close()


async def _poll(banking: Banking, db: Database, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            current = await epochs.read_all(db)
            await banking.registry.sync(current)
            await banking.catalog.sync(current)
        except Exception:
            log.exception("banking poll failed")
