"""Velocity counters in Redis (``MPAAS_REDIS_URL``), through the gateway's RESP client (ADR 0010).

One hash per key, width and bucket (``<prefix>risk:c:user:u_1:300:1764790200`` with fields
``n`` and ``s``) that expires when no window can reach it, so nothing needs sweeping. Two Lua
scripts keep each call to one round trip: ``RECORD`` claims the event id (``SET NX``) and only
then adds to every bucket and moves the last place (only forward in time); ``READ`` sums the
buckets of every window. The scripts compute bucket key names themselves, so they suit a
single Redis (or a replica set), not Redis Cluster.
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
    bucket_of,
    first_bucket,
)
from mpaas.gateway.resp import Resp, RespError

PLACE_TTL = 31 * 86400

#: KEYS: seen, then n bucket keys, then place keys. ARGV: seen ttl, amount, n, at, lat, lon,
#: then the n bucket ttls.
RECORD = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
local n = tonumber(ARGV[3])
for i = 1, n do
  redis.call('HINCRBY', KEYS[1 + i], 'n', 1)
  redis.call('HINCRBY', KEYS[1 + i], 's', ARGV[2])
  redis.call('EXPIRE', KEYS[1 + i], ARGV[6 + i])
end
for j = n + 2, #KEYS do
  local seen = redis.call('HGET', KEYS[j], 'at')
  if not seen or tonumber(seen) <= tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[j], 'lat', ARGV[5], 'lon', ARGV[6], 'at', ARGV[4])
    redis.call('EXPIRE', KEYS[j], PLACE_TTL)
  end
end
return 1
""".replace("PLACE_TTL", str(PLACE_TTL))

#: ARGV: m (keys), w (windows), the m counter prefixes, then per window: width, first, last;
#: then the place keys ('' for none). Returns per key and window {n, s}, then per place {lat, lon, at}.
READ = """
local m, w = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for k = 1, m do
  local base = ARGV[2 + k]
  for i = 0, w - 1 do
    local width = ARGV[3 + m + 3 * i]
    local first, last = tonumber(ARGV[4 + m + 3 * i]), tonumber(ARGV[5 + m + 3 * i])
    local n, s = 0, 0
    for b = first, last, tonumber(width) do
      local v = redis.call('HMGET', base .. ':' .. width .. ':' .. string.format('%d', b), 'n', 's')
      n = n + (tonumber(v[1]) or 0)
      s = s + (tonumber(v[2]) or 0)
    end
    out[#out + 1] = n
    out[#out + 1] = string.format('%d', s)
  end
end
for p = 3 + m + 3 * w, #ARGV do
  if ARGV[p] ~= '' then
    local v = redis.call('HMGET', ARGV[p], 'lat', 'lon', 'at')
    out[#out + 1] = v
  end
end
return out
"""


class RedisCounterStore:
    """:class:`mpaas.banking.risk.counters.CounterStore` on Redis."""

    def __init__(self, url: str, prefix: str = "mpaas:", timeout: float = 2.0) -> None:
        self.prefix = prefix + "risk:"
        self.client = Resp(url, timeout)
        self._sha = {
            script: hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
            for script in (RECORD, READ)
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

    async def read(self, keys: Sequence[str], now: float, places: bool) -> dict[str, Counts]:
        result = {key: Counts() for key in keys}
        if not keys:
            return result
        args: list[str | int] = [len(result), len(WINDOWS)]
        args += [f"{self.prefix}c:{key}" for key in result]
        for window, width in WINDOWS.values():
            args += [width, first_bucket(now, window, width), bucket_of(now, width)]
        if places:
            args += [f"{self.prefix}p:{key}" for key in result]
        reply = await self._eval(READ, (), args)
        pos = 0
        for counts in result.values():
            for name in WINDOWS:
                counts.count[name], counts.amount[name] = int(reply[pos]), int(reply[pos + 1])
                pos += 2
        if places:
            for counts in result.values():
                lat, lon, at = reply[pos]
                pos += 1
                if lat is not None and lon is not None and at is not None:
                    counts.place = Place(float(lat), float(lon), float(at))
        return result

    async def record(self, obs: Observation) -> bool:
        keys, ttls = [f"{self.prefix}seen:{obs.event_id}"], []
        unique = sorted(set(obs.keys))
        for key in unique:
            for window, width in WINDOWS.values():
                keys.append(f"{self.prefix}c:{key}:{width}:{bucket_of(obs.at, width)}")
                ttls.append(window + 2 * width)
        count = len(keys) - 1
        lat, lon = obs.place if obs.place is not None else (0.0, 0.0)
        if obs.place is not None:
            keys += [f"{self.prefix}p:{key}" for key in unique]
        args: list[str | int | float] = [SEEN_SECONDS, obs.amount, count, repr(obs.at), repr(lat), repr(lon)]
        return bool(await self._eval(RECORD, keys, [*args, *ttls]))

    async def sweep(self, now: float) -> None:
        return None  # every key expires by itself

    async def close(self) -> None:
        await self.client.close()
