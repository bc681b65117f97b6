"""Builds the releases runtime for the app factory, with its background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from mpaas.appkeys import BLOBS, DB, GC_SOURCES, SETTINGS
from mpaas.identity.models import App
from mpaas.packages.models import Package
from mpaas.packages.protocols.codepush import CodePushDiffs
from mpaas.packages.protocols.expo import ExpoManifests, PartSigner
from mpaas.packages.releases.key import RELEASES, ReleaseRuntime
from mpaas.packages.releases.service import ReleaseService
from mpaas.packages.releases.update_index import UpdateIndex
from mpaas.packages.service_key import PACKAGES

log = logging.getLogger("mpaas.releases")


def _signing_seam(app: web.Application, service: ReleaseService) -> PartSigner | None:
    """Connect the signing domain when it is wired: channel sets into TUF, Expo signatures.

    Without it (or for an app without an Expo key) manifests are served unsigned.
    """
    try:
        from mpaas.signing.service_key import SIGNING
    except ImportError:  # pragma: no cover - the signing domain ships with mpaas
        return None
    signing = app.get(SIGNING)
    if signing is None:
        return None

    async def set_channels(app_row: App, package: Package, channels: list[str]) -> None:
        if await signing.has_repository(app_row.name):  # without TUF keys nothing is signed
            await signing.set_channels(app_row.name, package, channels)

    service.channel_hooks.append(set_channels)

    async def sign(app_name: str, body: bytes) -> str | None:
        if signing.expo_certificate(app_name) is None:
            return None
        return await signing.sign_expo_part(app_name, body)

    return sign


@contextlib.asynccontextmanager
async def releases_context(app: web.Application) -> AsyncIterator[ReleaseRuntime]:
    s = app[SETTINGS]
    service = ReleaseService(app[DB], app[PACKAGES])
    index = UpdateIndex(app[DB], negative_ttl=s.release_poll_seconds)
    service.listeners.append(index.invalidate)
    runtime = ReleaseRuntime(
        service=service,
        index=index,
        diffs=CodePushDiffs(app[DB], app[BLOBS], app[PACKAGES], s.tmp_dir),
        expo=ExpoManifests(app[BLOBS]),
        poll_interval=s.update_poll_interval,
        public_url=s.public_url,
    )
    runtime.signer = _signing_seam(app, service)
    app[RELEASES] = runtime
    app[GC_SOURCES].append(CodePushDiffs.referenced_query())
    await index.poll_once()
    tasks: list[asyncio.Task[None]] = []
    if s.release_background:
        tasks.append(asyncio.create_task(index.run_poller(s.release_poll_seconds)))
        tasks.append(asyncio.create_task(index.run_flusher(service.add_checks, s.counter_flush_seconds)))
    try:
        yield runtime
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await index.flush_checks(service.add_checks)
