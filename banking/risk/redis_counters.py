"""Velocity counters in Redis (``MPAAS_REDIS_URL``), through the gateway's RESP client (ADR 0010).

One hash per key (``<prefix>risk:v:user:u_1``) holds, for each bucket width ``W`` (5 minutes,
1 hour, 1 day: :data:`~mpaas.banking.risk.counters.WINDOWS`), the buckets as fields
``W:<bucket start>n`` (count) and ``W:<bucket start>s`` (sum in fen), and the running totals
``Wn`` and ``Ws`` of every bucket from ``Wlo`` on. A window is then its totals less the one
bucket below its first (kept as slack), one ``HMGET`` per width, however many buckets the
window spans: the earlier layout, a hash per bucket, ran 68 ``HMGET`` calls per key in the
read script, about 0.25 ms of Redis CPU per transfer (bench/transfers.py).

Buckets that fall out of a window are trimmed as time moves on (``trim``, :mod:`.redis_scripts`): their
counts leave the totals and their fields are deleted, by whichever script first sees a later
time, so a hash holds at most a window's buckets plus one. One bucket below the window's
first is kept, so that a process whose clock is up to one bucket width behind another's still
reads its window exactly. A key idle for longer than a window is trimmed by one pass over its
fields rather than bucket by bucket.

Each call is one Lua script, one round trip (:mod:`.redis_scripts`): ``RECORD`` claims the
event id (``SET NX``) and only then adds to the buckets and totals and moves the last place
(only forward in time); ``READ`` trims and reads; ``COUNT`` reads and records in one atomic
step (the engine counts a transfer when it decides it, so parallel transfers see each other);
``RELEASE`` gives a count back once. Totals count every bucket from ``Wlo`` on,
later ones included, as the SQL store does. The scripts compute key names themselves, so
they suit a single Redis (or a replica set), not Redis Cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from mpaas.banking.risk.counters import (
    SEEN_SECONDS,
    WINDOWS,
    Counts,
    Observation,
    Place,
    Reservation,
    bucket_of,
    first_bucket,
)
from mpaas.banking.risk.redis_scripts import COUNT, READ, RECORD, RELEASE
from mpaas.gateway.resp import Resp, RespError

#: Each width's window in buckets.
SPANS = {width: window // width for window, width in WINDOWS.values()}
#: A counter hash outlives its longest window by two of that window's buckets.
HASH_TTL = max(window + 2 * width for window, width in WINDOWS.values())


class RedisCounterStore:
    """:class:`mpaas.banking.risk.counters.CounterStore` on Redis."""

    def __init__(self, url: str, prefix: str = "mpaas:", timeout: float = 2.0) -> None:
        self.prefix = prefix + "risk:"
        self.client = Resp(url, timeout)
        self._sha = {
            script: hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
            for script in (RECORD, READ, COUNT, RELEASE)
        }

    async def _eval(self, script: str, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        command = ["EVALSHA", self._sha[script], str(len(keys)), *keys, *map(str, args)]
        # the keys hold user and device ids: ASCII nearly always, and then one encode
        send = self.client.call_ascii if "".join(command).isascii() else self._call
        try:
            return await send(command)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            await self.client.call("SCRIPT", "LOAD", script)
            return await send(command)

    async def _call(self, command: list[str]) -> Any:
        return await self.client.call(*command)

    def _read_args(self, keys: Sequence[str], now: float, places: bool) -> list[str | int | float]:
        args: list[str | int | float] = [len(keys), len(WINDOWS)]
        args += [f"{self.prefix}v:{key}" for key in keys]
        for window, width in WINDOWS.values():
            args += [width, first_bucket(now, window, width), SPANS[width]]
        if places:
            args += [f"{self.prefix}p:{key}" for key in keys]
        return args

    def _keys(self, obs: Observation) -> list[str]:
        """The Redis keys a transaction's record and release touch: its event id's claim, its
        keys' counter hashes, then (when it has a place) their last places."""
        unique = sorted(set(obs.keys))
        keys = [f"{self.prefix}seen:{obs.event_id}", *(f"{self.prefix}v:{key}" for key in unique)]
        if obs.place is not None:
            keys += [f"{self.prefix}p:{key}" for key in unique]
        return keys

    def _record_call(self, obs: Observation) -> tuple[list[str], list[str | int | float]]:
        unique = sorted(set(obs.keys))
        lat, lon = obs.place if obs.place is not None else (0.0, 0.0)
        args: list[str | int | float] = [SEEN_SECONDS, obs.amount, len(unique), repr(obs.at)]
        args += [repr(lat), repr(lon), HASH_TTL, len(WINDOWS)]
        for window, width in WINDOWS.values():
            args += [width, bucket_of(obs.at, width), first_bucket(obs.at, window, width), SPANS[width]]
        return self._keys(obs), args

    async def read(self, keys: Sequence[str], now: float, places: bool) -> dict[str, Counts]:
        result = {key: Counts() for key in keys}
        if not keys:
            return result
        _fill(result, await self._eval(READ, (), self._read_args(list(result), now, places)), places)
        return result

    async def record(self, obs: Observation) -> bool:
        return bool(await self._eval(RECORD, *self._record_call(obs)))

    async def read_and_count(
        self, keys: Sequence[str], now: float, places: bool, obs: Observation
    ) -> tuple[dict[str, Counts], Reservation | None]:
        result = {key: Counts() for key in keys}
        record_keys, record_args = self._record_call(obs)
        args = [len(record_args), *record_args, *self._read_args(list(result), now, places)]
        reply = await self._eval(COUNT, record_keys, args)
        pos = _fill(result, reply, places)
        if not int(reply[pos]):
            return result, None
        unique = sorted(set(obs.keys))
        previous = {key: _place(v) for key, v in zip(unique, reply[pos + 1 :], strict=False)}
        return result, Reservation(obs, previous)

    async def release(self, reservation: Reservation) -> None:
        obs = reservation.obs
        unique = sorted(set(obs.keys))
        args: list[str | int | float] = [obs.amount, repr(obs.at), len(unique), len(WINDOWS)]
        for _window, width in WINDOWS.values():
            args += [width, bucket_of(obs.at, width)]
        if obs.place is not None:
            for key in unique:
                was = reservation.previous.get(key)
                args += ["", "", ""] if was is None else [repr(was.lat), repr(was.lon), repr(was.at)]
        await self._eval(RELEASE, self._keys(obs), args)

    async def sweep(self, now: float) -> None:
        return None  # every key expires by itself

    async def close(self) -> None:
        await self.client.close()


def _place(value: Any) -> Place | None:
    lat, lon, at = value
    if lat is None or lon is None or at is None:
        return None
    return Place(float(lat), float(lon), float(at))


def _fill(result: dict[str, Counts], reply: Any, places: bool) -> int:
    """A read's reply into ``result``; the position in ``reply`` after it."""
    pos = 0
    for counts in result.values():
        for name in WINDOWS:
            counts.count[name], counts.amount[name] = int(reply[pos]), int(reply[pos + 1])
            pos += 2
    if places:
        for counts in result.values():
            counts.place = _place(reply[pos])
            pos += 1
    return pos
