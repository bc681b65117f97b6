"""The in-memory update index: what every channel offers, so a poll costs no SQL.

Per channel, the index holds each lineage's releases (oldest first) with their
compiled targeting, packages, deltas and the hashes clients may hold. It is built
from the database the first time a channel is asked for, and rebuilt when the
channel's row in ``release_epochs`` moves: every process polls those rows (and the
deployment keys) every ``release_poll_seconds``, so a change made through any process
is served by all of them within that time. The process that made the change rebuilds
at once (:meth:`UpdateIndex.invalidate`).

The structures live in :mod:`~mpaas.packages.releases.channel_index` and are read
from the database by :mod:`~mpaas.packages.releases.index_build`; this module keeps
them fresh (ADR 0005) and answers lookups.

Check counts are batched in memory (:class:`CheckCounter`) and flushed every
``counter_flush_seconds``: a crash loses at most that many seconds of check counts,
never a status report (those are written synchronously).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlmodel import select

from mpaas.identity.models import App, Channel
from mpaas.identity.tenancy import resolve_deployment_key
from mpaas.packages.releases.channel_index import ChannelIndex, ChannelKey, CheckCounter
from mpaas.packages.releases.index_build import build_channel_index
from mpaas.packages.releases.models import ReleaseEpoch
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.update_index")


class UpdateIndex:
    def __init__(self, db: Database, negative_ttl: float = 5.0) -> None:
        self.db = db
        self.negative_ttl = negative_ttl
        self._missing: dict[str, float] = {}
        self.keys: dict[str, ChannelKey] = {}
        self.channels: dict[tuple[str, str], ChannelKey] = {}
        self.indexes: dict[int, ChannelIndex] = {}
        self.epochs: dict[int, int] = {}
        self.checks = CheckCounter()
        self._building: dict[int, asyncio.Future[ChannelIndex]] = {}
        self._stale: set[int] = set()

    # -- lookups (no SQL once loaded) -------------------------------------------------

    async def channel_for_key(self, deployment_key: str) -> ChannelKey | None:
        """The channel of a deployment key: from memory, else one SQL lookup (then cached).

        Unknown keys are remembered for ``negative_ttl`` seconds, so a flood of bad keys
        cannot turn into a flood of queries; a key created in another process is seen at
        the next poll at the latest.
        """
        found = self.keys.get(deployment_key)
        if found is not None or not deployment_key or len(deployment_key) > 128:
            return found
        if self._missing.get(deployment_key, 0.0) > time.monotonic():
            return None
        ref = await resolve_deployment_key(self.db, deployment_key)
        if ref is None:
            if len(self._missing) > 100_000:
                self._missing.clear()
            self._missing[deployment_key] = time.monotonic() + self.negative_ttl
            return None
        return self._remember(ref.app, ref.channel)

    async def channel_named(self, app: str, channel: str) -> ChannelKey | None:
        found = self.channels.get((app, channel))
        if found is not None:
            return found
        marker = f"name:{app}/{channel}"
        if self._missing.get(marker, 0.0) > time.monotonic():
            return None
        async with self.db.session() as s:
            row = (
                await s.exec(select(Channel, App).join(App).where(App.name == app, Channel.name == channel))
            ).first()
        if row is None:
            self._missing[marker] = time.monotonic() + self.negative_ttl
            return None
        return self._remember(row[1], row[0])

    def _remember(self, app: App, ch: Channel) -> ChannelKey:
        assert ch.id is not None and app.id is not None
        ref = ChannelKey(app.id, app.name, ch.id, ch.name)
        self.keys[ch.deployment_key] = ref
        self.channels[(app.name, ch.name)] = ref
        return ref

    def ready(self, deployment_key: str) -> ChannelIndex | None:
        """The channel index of a known key if it is built and fresh: the poll's path, no await."""
        ref = self.keys.get(deployment_key)
        return None if ref is None else self._fresh(ref.channel_id)

    def _fresh(self, channel_id: int) -> ChannelIndex | None:
        return None if channel_id in self._stale else self.indexes.get(channel_id)

    async def get(self, channel: ChannelKey) -> ChannelIndex:
        index = self._fresh(channel.channel_id)
        if index is not None:
            return index
        pending = self._building.get(channel.channel_id)
        if pending is None:
            pending = asyncio.ensure_future(self._build(channel))
            self._building[channel.channel_id] = pending
            pending.add_done_callback(lambda _f: self._building.pop(channel.channel_id, None))
        return await asyncio.shield(pending)

    def invalidate(self, channel_id: int) -> None:
        """Rebuild this channel on its next check (called after a local commit)."""
        if channel_id in self.indexes:
            self._stale.add(channel_id)

    # -- loading -----------------------------------------------------------------------

    async def load_keys(self) -> None:
        async with self.db.session() as s:
            rows = (await s.exec(select(Channel, App).join(App))).all()
        keys: dict[str, ChannelKey] = {}
        names: dict[tuple[str, str], ChannelKey] = {}
        for ch, app in rows:
            assert ch.id is not None and app.id is not None
            ref = ChannelKey(app.id, app.name, ch.id, ch.name)
            keys[ch.deployment_key] = ref
            names[(app.name, ch.name)] = ref
        self.keys, self.channels = keys, names

    async def poll_once(self) -> None:
        """Reload deployment keys and mark channels whose epoch moved for rebuilding."""
        await self.load_keys()
        async with self.db.session() as s:
            rows = (await s.exec(select(ReleaseEpoch))).all()
        epochs = {r.channel_id: int(r.epoch) for r in rows}
        for channel_id, index in list(self.indexes.items()):
            if epochs.get(channel_id, 0) != index.epoch:
                self._stale.add(channel_id)
        known = {k.channel_id for k in self.keys.values()}
        for channel_id in list(self.indexes):
            if channel_id not in known:
                self.indexes.pop(channel_id, None)
        self.epochs = epochs

    async def _build(self, channel: ChannelKey) -> ChannelIndex:
        self._stale.discard(channel.channel_id)
        index = await build_channel_index(self.db, channel)
        # If the channel changed again while we read, it is in _stale again: served now,
        # rebuilt on the next check.
        previous = self.indexes.get(channel.channel_id)
        if previous is not None:
            previous.drain_tallies(self.checks)
        self.indexes[channel.channel_id] = index
        log.debug(
            "index built",
            extra={"channel": channel.channel_id, "releases": index.release_count, "epoch": index.epoch},
        )
        return index

    # -- background work -----------------------------------------------------------------

    async def run_poller(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll_once()
            except Exception:
                log.exception("update index poll failed; serving the previous index")

    async def run_flusher(self, flush: Any, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush_checks(flush)

    async def flush_checks(self, flush: Any) -> None:
        for index in self.indexes.values():
            index.drain_tallies(self.checks)
        counts = self.checks.take()
        if not counts:
            return
        try:
            await flush(counts)
        except Exception:
            log.exception("flushing check counters failed; retrying next time")
            for release_id, n in counts.items():
                self.checks.add(release_id, n)
