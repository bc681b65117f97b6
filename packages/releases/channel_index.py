"""The update index's in-memory structures: a channel's lineages, releases and memoised plans.

:class:`ChannelIndex` is what one channel offers, built by
:mod:`~mpaas.packages.releases.index_build` and kept fresh by
:class:`~mpaas.packages.releases.update_index.UpdateIndex`. A lineage's :class:`Plan`
per (held release, binary) is precomputed here; the per-device work on it runs in
the compiled :mod:`~mpaas.packages.releases.check_kernel`.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from mpaas.packages.releases.check_kernel import Gate, Plan, Probe, Tally
from mpaas.packages.releases.rollout import Device, Targeting
from mpaas.packages.semver import Range, Version

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


def now() -> float:
    return time.time()
