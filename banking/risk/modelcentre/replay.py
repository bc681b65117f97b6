"""Features of synthetic transfers without a database: an in-memory counter store with the
SQL store's bucket semantics, and the engine's own feature functions. The training script
uses it to see each transfer as the engine would (velocity before the transfer, travel from
the last committed one); ``bench/risk.py`` checks that it agrees with the real engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mpaas.banking.risk.counters import WINDOWS, Counts, Observation, Place, bucket_of, first_bucket
from mpaas.banking.risk.decision import RiskContext
from mpaas.banking.risk.features import VEL_ENTITIES, counter_key, entity_id, place_of, travel, velocity


class MemoryCounterStore:
    """A :class:`~mpaas.banking.risk.counters.CounterStore` in a dict (one process, no expiry
    beyond :meth:`sweep`)."""

    def __init__(self) -> None:
        self.buckets: dict[tuple[str, int], dict[int, list[int]]] = {}
        self.places: dict[str, Place] = {}
        self.seen: set[str] = set()

    async def read(self, keys: Sequence[str], now: float, places: bool) -> dict[str, Counts]:
        return {key: self.counts(key, now, places) for key in keys}

    def counts(self, key: str, now: float, places: bool = True) -> Counts:
        out = Counts()
        for name, (window, width) in WINDOWS.items():
            first = first_bucket(now, window, width)
            n = s = 0
            for start, (count, amount) in self.buckets.get((key, width), {}).items():
                if start >= first:
                    n, s = n + count, s + amount
            out.count[name], out.amount[name] = n, s
        if places:
            out.place = self.places.get(key)
        return out

    async def record(self, obs: Observation) -> bool:
        return self.add(obs)

    def add(self, obs: Observation) -> bool:
        if obs.event_id in self.seen:
            return False
        self.seen.add(obs.event_id)
        for key in obs.keys:
            for _name, (_window, width) in WINDOWS.items():
                cell = self.buckets.setdefault((key, width), {}).setdefault(bucket_of(obs.at, width), [0, 0])
                cell[0] += 1
                cell[1] += obs.amount
            if obs.place is not None:
                self.places[key] = Place(obs.place[0], obs.place[1], obs.at)
        return True

    async def sweep(self, now: float) -> None:
        longest = max(window for window, _width in WINDOWS.values())
        for (_key, width), cells in self.buckets.items():
            for start in [s for s in cells if s < bucket_of(now - longest, width)]:
                del cells[start]

    async def close(self) -> None:
        return None


class Featurizer:
    """The full decision context of each transfer, in time order (call :meth:`commit` for
    the ones that go through)."""

    def __init__(self, scene: str = "transfer") -> None:
        self.scene = scene
        self.store = MemoryCounterStore()

    def context(self, ctx: RiskContext, now: float) -> dict[str, Any]:
        full: dict[str, Any] = {
            "txn": dict(ctx.txn),
            "user": dict(ctx.user),
            "device": dict(ctx.device),
            "net": dict(ctx.net),
            "geo": dict(ctx.geo),
        }
        vel: dict[str, Any] = {}
        for entity in VEL_ENTITIES:
            value = entity_id(full, entity, "id")
            if value is not None:
                counts = self.store.counts(counter_key(self.scene, entity, value), now, entity == "user")
                vel[entity] = velocity(counts)
                if entity == "user":
                    full["geo"].update(travel(ctx.geo, counts.place, now))
        full["vel"] = vel
        return full

    def commit(self, ctx: RiskContext, now: float) -> None:
        keys = tuple(
            counter_key(self.scene, entity, value)
            for entity in VEL_ENTITIES
            if (value := entity_id({"user": ctx.user, "device": ctx.device}, entity, "id")) is not None
        )
        amount = ctx.txn.get("amount", 0)
        self.store.add(
            Observation(f"{self.scene}/{ctx.txn['id']}", keys, int(amount), now, place_of(ctx.geo))
        )
