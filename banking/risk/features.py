"""Features the engine adds to a caller's context: velocity (``vel``), travel (in ``geo``)
and list membership (``lists``). A feature that cannot be known is left out, never made
up: a rule that reads it is then "not evaluated".

- ``vel.<entity>.count_<w>``, ``sum_<w>`` (fen) for ``w`` in 1h, 24h, 30d, and ``avg_30d``
  (integer fen; absent with no transaction in 30 days), for the ``user`` and the ``device``;
- ``geo.km_from_last``, ``geo.hours_since_last`` and ``geo.kmh_from_last`` against the
  user's last committed transaction (the time is floored at one minute);
- ``lists.<kind>.<entity>``: whether ``txn.counterparty``, ``txn.to_account``,
  ``device.id``, ``net.ip``, ``user.id`` or ``txn.card_bin`` is on the deny, allow or watch list.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mpaas.banking.risk.counters import WINDOWS, Counts, Place

#: entity → (context root, field) holding its id.
LIST_SOURCES: dict[str, tuple[str, str]] = {
    "counterparty": ("txn", "counterparty"),
    "account": ("txn", "to_account"),
    "device": ("device", "id"),
    "ip": ("net", "ip"),
    "user": ("user", "id"),
    "card_bin": ("txn", "card_bin"),
}
VEL_ENTITIES = ("user", "device")
TRAVEL_FIELDS = ("km_from_last", "hours_since_last", "kmh_from_last")
EARTH_KM = 6371.0088


def entity_id(context: Mapping[str, Mapping[str, Any]], root: str, name: str) -> str | None:
    value = context.get(root, {}).get(name)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def bounded(value: str, limit: int = 96) -> str:
    """``value``, or its sha256 when longer than ``limit`` (keys and ids are bounded columns)."""
    return value if len(value) <= limit else "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def counter_key(scene: str, entity: str, value: str) -> str:
    return f"{scene}/{entity}:{bounded(value)}"


def velocity(counts: Counts) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for window in WINDOWS:
        out[f"count_{window}"] = counts.count[window]
        out[f"sum_{window}"] = counts.amount[window]
    n = counts.count["30d"]
    out["avg_30d"] = counts.amount["30d"] // n if n else None
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def place_of(geo: Mapping[str, Any]) -> tuple[float, float] | None:
    lat, lon = _number(geo.get("lat")), _number(geo.get("lon"))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


def km_between(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(h)))


def travel(geo: Mapping[str, Any], last: Place | None, now: float) -> dict[str, float]:
    here = place_of(geo)
    if here is None or last is None:
        return {}
    km = km_between((last.lat, last.lon), here)
    hours = max(now - last.at, 60.0) / 3600.0
    return {
        "km_from_last": round(km, 3),
        "hours_since_last": round(hours, 4),
        "kmh_from_last": round(km / hours, 1),
    }


class ListIndex:
    """Every list entry in memory, reloaded when the ``risk`` epoch moves."""

    def __init__(self, entries: list[tuple[str, str, str, datetime | None]] | None = None) -> None:
        self._entries: dict[tuple[str, str], list[tuple[str, datetime | None]]] = {}
        for kind, entity, value, expires_at in entries or ():
            self._entries.setdefault((entity, value), []).append((kind, expires_at))

    def kinds(self, entity: str, value: str, now: datetime) -> set[str]:
        return {
            kind
            for kind, expires_at in self._entries.get((entity, value), ())
            if expires_at is None or expires_at > now
        }

    def features(
        self, context: Mapping[str, Mapping[str, Any]], wanted: list[tuple[str, str]], now: datetime
    ) -> dict[str, dict[str, bool]]:
        """``{kind: {entity: on the list}}`` for each wanted (kind, entity) whose id is known."""
        out: dict[str, dict[str, bool]] = {}
        memo: dict[str, set[str]] = {}
        for kind, entity in wanted:
            source = LIST_SOURCES.get(entity)
            value = entity_id(context, *source) if source is not None else None
            if value is None:
                continue
            if entity not in memo:
                memo[entity] = self.kinds(entity, value, now)
            out.setdefault(kind, {})[entity] = kind in memo[entity]
        return out


def path_value(context: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (``vel.user.count_1h``), or None."""
    value: Any = context
    for part in path.split("."):
        # ``type is dict`` first: the ABC check alone costs more than the lookup
        if not (type(value) is dict or isinstance(value, Mapping)) or part not in value:
            return None
        value = value[part]
    return value


def model_value(value: Any) -> float | None:
    """A feature value as a model takes it: numbers and booleans as floats, else missing."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    return _number(value)


def entities_of(context: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """entity → id of every list entity the context names (for lists, cases and snoozes)."""
    out = {}
    for entity, (root, name) in LIST_SOURCES.items():
        value = entity_id(context, root, name)
        if value is not None:
            out[entity] = value
    return out
