"""The in-memory update index: what every channel offers, so a poll costs no SQL.

Per channel, the index holds each lineage's releases (oldest first) with their
compiled targeting, packages, deltas and the hashes clients may hold. It is built
from the database the first time a channel is asked for, and rebuilt when the
channel's row in ``release_epochs`` moves: every process polls those rows (and the
deployment keys) every ``release_poll_seconds``, so a change made through any process
is served by all of them within that time. The process that made the change rebuilds
at once (:meth:`UpdateIndex.invalidate`).

Check counts are batched in memory (:class:`CheckCounter`) and flushed every
``counter_flush_seconds``: a crash loses at most that many seconds of check counts,
never a status report (those are written synchronously).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select

from mpaas.identity.models import App, Channel
from mpaas.identity.tenancy import resolve_deployment_key
from mpaas.packages.models import Package, PackageDelta
from mpaas.packages.releases.check_kernel import Gate, Plan, Probe, Tally
from mpaas.packages.releases.models import Release, ReleaseEpoch
from mpaas.packages.releases.rollout import Device, Targeting, parse_rules
from mpaas.packages.semver import Range, Version
from mpaas.packages.targets import delta_target, full_target, manifest_target
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.update_index")

LIVE = ("active",)
KEPT = ("active", "paused", "halted")


@dataclass(frozen=True, slots=True)
class DeltaInfo:
    from_version: str
    from_hash: str
    sha256: str
    size: int
    target: str


@dataclass(frozen=True, slots=True)
class PackageInfo:
    pk: int
    kind: str
    package_id: str
    version: str
    package_hash: str
    codepush_hash: str
    archive_sha256: str
    archive_size: int
    manifest_sha256: str
    meta: dict[str, Any]
    full_target: str
    manifest_target: str
    #: Stored patches keyed by the base's mpaas package hash.
    deltas: dict[str, DeltaInfo] = field(default_factory=dict)


class CompiledRange:
    """A version range with its answers memoised: most devices share a few binary versions."""

    __slots__ = ("_memo", "range", "text")

    def __init__(self, r: Range) -> None:
        self.range = r
        self.text = r.text
        self._memo: dict[Version, bool] = {}

    def contains(self, v: Version) -> bool:
        hit = self._memo.get(v)
        if hit is None:
            if len(self._memo) >= 4096:
                self._memo.clear()
            hit = self._memo[v] = self.range.contains(v)
        return hit


@dataclass(frozen=True, slots=True)
class IndexedRelease:
    id: int
    seq: int
    status: str
    mandatory: bool
    description: str
    starts_at: float
    created_at: float
    range: CompiledRange | None
    targeting: Targeting
    #: ``targeting`` with the start time, compiled for the hot path.
    gate: Gate
    package: PackageInfo | None
    platform: str | None
    #: Package pk of the release this one rolls back: holders of it always qualify.
    rollback_from_pk: int | None

    @property
    def label(self) -> str:
        return f"v{self.seq}"

    def compatible(self, d: Device) -> bool:
        if self.platform is not None and (d.os or "").lower() != self.platform:
            return False
        if self.range is None:
            return True
        return d.app_version is not None and self.range.contains(d.app_version)


@dataclass(frozen=True, slots=True)
class Decision:
    """``update`` (install target), ``current``, ``rollback_to_embedded``, ``binary_update`` or ``none``."""

    action: str
    target: IndexedRelease | None = None
    mandatory: bool = False
    held: IndexedRelease | None = None


class Outcome:
    """A decision a plan can reach, with the native wire fragments encoded for it.

    ``encoded`` maps (delta base hash, base URL) to the package's JSON object and its
    digest; it lives as long as the index build, so the bytes are made once.
    """

    __slots__ = ("counted", "decision", "deltas", "encoded")

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        #: The release whose check counter moves, if any.
        self.counted = decision.target.id if decision.target is not None else None
        target = decision.target
        #: The target's stored patches when the device is to install it.
        self.deltas = (
            target.package.deltas
            if decision.action == "update" and target is not None and target.package is not None
            else None
        )
        self.encoded: dict[tuple[str | None, str], tuple[bytes, int]] = {}


#: Admits every device: a rollback of the package the device holds.
UNCONDITIONAL = Gate(0, 0, unconditional=True)


#: Plans kept per lineage before the memo starts over (distinct held releases × binaries).
MAX_PLANS = 4096


@dataclass
class Lineage:
    kind: str
    package_id: str
    releases: list[IndexedRelease] = field(default_factory=list)
    by_hash: dict[str, IndexedRelease] = field(default_factory=dict)
    by_codepush_hash: dict[str, IndexedRelease] = field(default_factory=dict)
    by_id: dict[int, IndexedRelease] = field(default_factory=dict)
    _plans: dict[Hashable, Plan] = field(default_factory=dict, repr=False)

    def add(self, r: IndexedRelease) -> None:
        self.releases.append(r)
        self.by_id[r.id] = r
        self._plans.clear()
        if r.package is not None and r.status != "rolled_back":
            self.by_hash[r.package.package_hash] = r
            self.by_codepush_hash[r.package.codepush_hash] = r
        elif r.package is not None:
            self.by_hash.setdefault(r.package.package_hash, r)
            self.by_codepush_hash.setdefault(r.package.codepush_hash, r)

    def decide(self, d: Device, held: IndexedRelease | None, holds_something: bool, now: float) -> Decision:
        """The release this device should run (see docs/protocol.md, "Which release")."""
        return self.choose(d, held, holds_something, now, (d.os, d.app_version)).decision

    def choose(
        self,
        d: Device,
        held: IndexedRelease | None,
        holds_something: bool,
        now: float,
        binary: Hashable,
    ) -> Outcome:
        """:meth:`decide`, returning the memoised :class:`Outcome`.

        ``binary`` must identify the device's (os, app_version) pair; callers that have
        the raw request texts pass those, which hash faster than a :class:`Version`.
        """
        return self.plan(d, held, holds_something, binary).choose(Probe(d), now)

    def plan(self, d: Device, held: IndexedRelease | None, holds_something: bool, binary: Hashable) -> Plan:
        """The memoised :class:`Plan` for a held release and binary (the native check's entry)."""
        key = (held.id if held is not None else 0, holds_something, binary)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            plan = self._plans[key] = self._plan(d, held, holds_something)
        return plan

    def _plan(self, d: Device, held: IndexedRelease | None, holds_something: bool) -> Plan:
        """Precompute :meth:`decide` for everything but the per-device gates.

        The rule: the newest live, compatible release that admits the device (a rollback
        of the held package admits it unconditionally). A device keeps a newer paused or
        halted release it already runs, so when the held release is kept, releases up to
        it can only lead back to it and are not candidates.
        """
        held_pk = held.package.pk if held is not None and held.package is not None else None
        keeps = held is not None and held.status in KEPT and held.compatible(d)
        gates: list[Gate] = []
        outcomes: list[Outcome] = []
        for r in reversed(self.releases):
            if keeps and held is not None and r.id <= held.id:
                break
            if r.status not in LIVE or not r.compatible(d):
                continue
            rollback_of_held = r.rollback_from_pk is not None and held_pk == r.rollback_from_pk
            outcomes.append(Outcome(self._target(d, held, holds_something, r)))
            gates.append(UNCONDITIONAL if rollback_of_held else r.gate)
            if rollback_of_held:
                break
        if keeps:
            fallback = Decision("current", held, held=held)
        elif holds_something:
            fallback = Decision("none", held=held)
        else:
            newer = self._needs_binary(d)
            fallback = Decision("binary_update", newer, held=held) if newer else Decision("none", held=held)
        outcomes.append(Outcome(fallback))
        return Plan(tuple(gates), tuple(outcomes))

    def _target(
        self, d: Device, held: IndexedRelease | None, holds_something: bool, target: IndexedRelease
    ) -> Decision:
        """The decision when ``target`` is the newest release admitting the device."""
        if target.package is None:
            action = "rollback_to_embedded" if holds_something else "none"
            return Decision(action, target, held=held)
        if held is not None and held.package is not None and held.package.pk == target.package.pk:
            return Decision("current", target, held=held)
        return Decision("update", target, self._mandatory_between(d, held, target), held)

    def _mandatory_between(self, d: Device, held: IndexedRelease | None, target: IndexedRelease) -> bool:
        """True if any release after the held one, up to the target, is mandatory.

        A client that skipped a mandatory release must still treat the jump as mandatory.
        """
        low = held.id if held is not None else 0
        for r in self.releases:
            if low < r.id <= target.id and r.mandatory and r.status != "rolled_back" and r.compatible(d):
                return True
        return False

    def _needs_binary(self, d: Device) -> IndexedRelease | None:
        """The newest live release, if it requires a newer binary than the device has."""
        if d.app_version is None:
            return None
        for r in reversed(self.releases):
            if r.status in LIVE and r.range is not None and r.package is not None:
                low = min_version(r.range.range)
                return r if low is not None and d.app_version < low else None
        return None


def min_version(r: Range) -> Version | None:
    """The lowest version a range can contain, or None if it is unbounded below."""
    lows: list[Version] = []
    for alt in r.alternatives:
        bounds = [c.version for c in alt if c.op in (">=", ">", "=")]
        if not bounds:
            return None
        lows.append(max(bounds))
    return min(lows) if lows else None


@dataclass
class ChannelIndex:
    app_id: int
    app_name: str
    channel_id: int
    channel_name: str
    epoch: int
    lineages: dict[tuple[str, str], Lineage] = field(default_factory=dict)
    #: Release id → (lineage, release), for status reports.
    releases: dict[int, tuple[Lineage, IndexedRelease]] = field(default_factory=dict)
    release_count: int = 0
    #: default_lineage() per kind, filled on first use (the index is not changed once built).
    _defaults: dict[str, Lineage | None] = field(default_factory=dict, repr=False)
    #: The native check's memo per (base URL, poll interval): see protocol_native.table_for.
    native_tables: dict[tuple[str, int], Any] = field(default_factory=dict, repr=False)
    #: Checks counted by the native check, per release, until UpdateIndex drains them.
    tallies: dict[int, Tally] = field(default_factory=dict, repr=False)

    def tally(self, release_id: int) -> Tally:
        found = self.tallies.get(release_id)
        if found is None:
            found = self.tallies[release_id] = Tally(release_id)
        return found

    def drain_tallies(self, into: CheckCounter) -> None:
        for release_id, tally in self.tallies.items():
            n = tally.take()
            if n:
                into.add(release_id, n)

    def default_lineage(self, kind: str = "bundle") -> Lineage | None:
        """The lineage of ``kind`` released most recently (CodePush and Expo serve one bundle)."""
        if kind in self._defaults:
            return self._defaults[kind]
        best: Lineage | None = None
        for lin in self.lineages.values():
            if (
                lin.kind == kind
                and lin.releases
                and (best is None or lin.releases[-1].id > best.releases[-1].id)
            ):
                best = lin
        if len(self._defaults) < 16:  # kinds come from the code, but stay bounded
            self._defaults[kind] = best
        return best


@dataclass(frozen=True)
class ChannelKey:
    app_id: int
    app_name: str
    channel_id: int
    channel_name: str


class CheckCounter:
    """Check counts per release, kept in memory and flushed in one transaction.

    The CodePush and Expo checks add here; the native check counts in its index's
    :class:`Tally` objects, which :meth:`ChannelIndex.drain_tallies` empties into this.
    """

    def __init__(self) -> None:
        self.pending: dict[int, int] = {}

    def add(self, release_id: int, n: int = 1) -> None:
        self.pending[release_id] = self.pending.get(release_id, 0) + n

    def take(self) -> dict[int, int]:
        taken = dict(self.pending)
        self.pending.clear()
        return taken


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
        async with self.db.session() as s:
            epoch_row = await s.get(ReleaseEpoch, channel.channel_id)
            epoch = int(epoch_row.epoch) if epoch_row is not None else 0
            rows = (
                await s.exec(
                    select(Release, Package)
                    .outerjoin(Package, col(Package.id) == col(Release.package_pk))
                    .where(Release.channel_id == channel.channel_id)
                    .order_by(col(Release.id))
                )
            ).all()
            pks = {p.id for _r, p in rows if p is not None}
            delta_rows = (
                (
                    await s.exec(
                        select(PackageDelta, Package)
                        .join(Package, col(Package.id) == col(PackageDelta.from_pk))
                        .where(col(PackageDelta.to_pk).in_(pks))
                    )
                ).all()
                if pks
                else []
            )
        deltas: dict[int, list[tuple[PackageDelta, Package]]] = {}
        for d, base in delta_rows:
            deltas.setdefault(d.to_pk, []).append((d, base))
        index = ChannelIndex(
            channel.app_id, channel.app_name, channel.channel_id, channel.channel_name, epoch
        )
        packages: dict[int, PackageInfo] = {}
        ranges: dict[str, CompiledRange] = {}
        for r, p in rows:
            info = None
            if p is not None:
                assert p.id is not None
                info = packages.get(p.id) or _package_info(p, deltas.get(p.id, []))
                packages[p.id] = info
            lineage = index.lineages.setdefault((r.kind, r.package_id), Lineage(r.kind, r.package_id))
            indexed = _indexed(r, info, ranges, lineage)
            lineage.add(indexed)
            index.releases[indexed.id] = (lineage, indexed)
        index.release_count = len(rows)
        # If the channel changed again while we read, it is in _stale again: served now,
        # rebuilt on the next check.
        previous = self.indexes.get(channel.channel_id)
        if previous is not None:
            previous.drain_tallies(self.checks)
        self.indexes[channel.channel_id] = index
        log.debug("index built", extra={"channel": channel.channel_id, "releases": len(rows), "epoch": epoch})
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


def _package_info(p: Package, deltas: Iterable[tuple[PackageDelta, Package]]) -> PackageInfo:
    assert p.id is not None
    info = PackageInfo(
        pk=p.id,
        kind=p.kind,
        package_id=p.package_id,
        version=p.version,
        package_hash=p.package_hash,
        codepush_hash=p.codepush_hash,
        archive_sha256=p.archive_sha256,
        archive_size=int(p.archive_size),
        manifest_sha256=p.manifest_sha256,
        meta=dict(p.meta),
        full_target=full_target(p),
        manifest_target=manifest_target(p),
    )
    for d, base in deltas:
        info.deltas[base.package_hash] = DeltaInfo(
            base.version, base.package_hash, d.patch_sha256, int(d.patch_size), delta_target(p, base)
        )
    return info


def _indexed(
    r: Release, info: PackageInfo | None, ranges: dict[str, CompiledRange], lineage: Lineage
) -> IndexedRelease:
    assert r.id is not None
    wl = r.whitelist or {}
    rollback_from_pk = None
    if r.rollback_of is not None:
        entry = lineage.by_id.get(r.rollback_of)
        if entry is not None and entry.package is not None:
            rollback_from_pk = entry.package.pk
    platform = info.meta.get("platform") if info is not None and info.kind == "hotfix" else None
    targeting = Targeting(
        seed=r.seed,
        rollout_bp=r.rollout_bp,
        rules=parse_rules(r.rules),
        device_ids=frozenset(wl.get("device_ids", ())),
        user_ids=frozenset(wl.get("user_ids", ())),
    )
    starts_at = r.starts_at.timestamp()
    return IndexedRelease(
        id=r.id,
        seq=r.seq,
        status=r.status,
        mandatory=r.mandatory,
        description=r.description,
        starts_at=starts_at,
        created_at=r.created_at.timestamp(),
        range=_compiled(ranges, r.target_binary_range),
        targeting=targeting,
        gate=targeting.gate(starts_at),
        package=info,
        platform=platform,
        rollback_from_pk=rollback_from_pk,
    )


def _compiled(ranges: dict[str, CompiledRange], text: str | None) -> CompiledRange | None:
    if not text:
        return None
    found = ranges.get(text)
    if found is None:
        found = ranges[text] = CompiledRange(Range.parse(text))
    return found


def now() -> float:
    return time.time()
