"""Velocity counters in Redis (``MPAAS_REDIS_URL``), through the gateway's RESP client (ADR 0010).

One hash per key (``<prefix>risk:v:user:u_1``) holds, for each bucket width ``W`` (5 minutes,
1 hour, 1 day: :data:`~mpaas.banking.risk.counters.WINDOWS`), the buckets as fields
``W:<bucket start>n`` (count) and ``W:<bucket start>s`` (sum in fen), and the running totals
``Wn`` and ``Ws`` of every bucket from ``Wlo`` on. A window is then its totals less the one
bucket below its first (kept as slack), one ``HMGET`` per width, however many buckets the
window spans: the earlier layout, a hash per bucket, ran 68 ``HMGET`` calls per key in the
read script, about 0.25 ms of Redis CPU per transfer (bench/transfers.py).

Buckets that fall out of a window are trimmed as time moves on (``trim`` below): their
counts leave the totals and their fields are deleted, by whichever script first sees a later
time, so a hash holds at most a window's buckets plus one. One bucket below the window's
first is kept, so that a process whose clock is up to one bucket width behind another's still
reads its window exactly. A key idle for longer than a window is trimmed by one pass over its
fields rather than bucket by bucket.

Two Lua scripts keep each call to one round trip: ``RECORD`` claims the event id
(``SET NX``) and only then adds to the buckets and totals and moves the last place (only
forward in time); ``READ`` trims and reads. Totals count every bucket from ``Wlo`` on,
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
    bucket_of,
    first_bucket,
)
from mpaas.gateway.resp import Resp, RespError

PLACE_TTL = 31 * 86400
#: A counter hash outlives its longest window by two of that window's buckets.
HASH_TTL = max(window + 2 * width for window, width in WINDOWS.values())

#: ``trim(h, w, first, span, lo)``: drop width ``w``'s buckets below ``first - w`` from the
#: totals and the hash and return the new ``Wlo`` (``lo``: the current one, read by the caller);
#: ``span`` is the window's bucket count (a longer gap is one pass over the fields).
TRIM = """
local function trim(h, w, first, span, lo)
  local keep = first - w
  if lo == nil then
    redis.call('HSET', h, w .. 'lo', keep)
    return keep
  end
  if lo >= keep then
    return lo
  end
  local dn, ds = 0, 0
  if (keep - lo) / w > span then
    local flat = redis.call('HGETALL', h)
    for j = 1, #flat, 2 do
      local fw, b, kind = string.match(flat[j], '^(%d+):(%d+)([ns])$')
      if fw == w and tonumber(b) < keep then
        if kind == 'n' then dn = dn + tonumber(flat[j + 1]) else ds = ds + tonumber(flat[j + 1]) end
        redis.call('HDEL', h, flat[j])
      end
    end
  else
    for b = lo, keep - w, w do
      local fb = w .. ':' .. string.format('%d', b)
      local v = redis.call('HMGET', h, fb .. 'n', fb .. 's')
      if v[1] then
        dn, ds = dn + tonumber(v[1]), ds + tonumber(v[2] or 0)
        redis.call('HDEL', h, fb .. 'n', fb .. 's')
      end
    end
  end
  redis.call('HINCRBY', h, w .. 'n', string.format('%d', -dn))
  redis.call('HINCRBY', h, w .. 's', string.format('%d', -ds))
  redis.call('HSET', h, w .. 'lo', string.format('%d', keep))
  return keep
end
"""

#: KEYS: seen, then n counter hashes, then place keys. ARGV: seen ttl, amount, n, at, lat, lon,
#: hash ttl, w (widths), then per width: width, bucket of ``at``, first bucket at ``at``, span.
RECORD = (
    TRIM
    + """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
local n, w = tonumber(ARGV[3]), tonumber(ARGV[8])
for i = 1, n do
  local h = KEYS[1 + i]
  for k = 0, w - 1 do
    local width, bucket = ARGV[9 + 4 * k], tonumber(ARGV[10 + 4 * k])
    local lo = tonumber(redis.call('HGET', h, width .. 'lo'))
    lo = trim(h, width, tonumber(ARGV[11 + 4 * k]), tonumber(ARGV[12 + 4 * k]), lo)
    if bucket >= lo then
      local fb = width .. ':' .. ARGV[10 + 4 * k]
      redis.call('HINCRBY', h, fb .. 'n', 1)
      redis.call('HINCRBY', h, fb .. 's', ARGV[2])
      redis.call('HINCRBY', h, width .. 'n', 1)
      redis.call('HINCRBY', h, width .. 's', ARGV[2])
    end
  end
  redis.call('EXPIRE', h, ARGV[7])
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
)

#: ARGV: m (keys), w (widths), the m counter hashes, then per width: width, first bucket at
#: ``now``, span; then the place keys ('' for none). Returns per key and width {n, s}, then per
#: place {lat, lon, at}.
READ = (
    TRIM
    + """
local m, w = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for k = 1, m do
  local h = ARGV[2 + k]
  for i = 0, w - 1 do
    local width, first = ARGV[3 + m + 3 * i], tonumber(ARGV[4 + m + 3 * i])
    local below = width .. ':' .. string.format('%d', first - tonumber(width))
    local fields = {width .. 'n', width .. 's', below .. 'n', below .. 's', width .. 'lo'}
    local v = redis.call('HMGET', h, unpack(fields))
    local lo = tonumber(v[5])
    if lo == nil or lo < first - tonumber(width) then  -- time moved on: trim, then read again
      trim(h, width, first, tonumber(ARGV[5 + m + 3 * i]), lo)
      v = redis.call('HMGET', h, unpack(fields))
    end
    out[#out + 1] = (tonumber(v[1]) or 0) - (tonumber(v[3]) or 0)
    out[#out + 1] = string.format('%d', (tonumber(v[2]) or 0) - (tonumber(v[4]) or 0))
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
)


def _spans() -> dict[int, int]:
    """Each width's window in buckets."""
    return {width: window // width for window, width in WINDOWS.values()}


SPANS = _spans()


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
        args += [f"{self.prefix}v:{key}" for key in result]
        for window, width in WINDOWS.values():
            args += [width, first_bucket(now, window, width), SPANS[width]]
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
        unique = sorted(set(obs.keys))
        keys = [f"{self.prefix}seen:{obs.event_id}", *(f"{self.prefix}v:{key}" for key in unique)]
        if obs.place is not None:
            keys += [f"{self.prefix}p:{key}" for key in unique]
        lat, lon = obs.place if obs.place is not None else (0.0, 0.0)
        args: list[str | int | float] = [SEEN_SECONDS, obs.amount, len(unique), repr(obs.at)]
        args += [repr(lat), repr(lon), HASH_TTL, len(WINDOWS)]
        for window, width in WINDOWS.values():
            args += [width, bucket_of(obs.at, width), first_bucket(obs.at, window, width), SPANS[width]]
        return bool(await self._eval(RECORD, keys, args))

    async def sweep(self, now: float) -> None:
        return None  # every key expires by itself

    async def close(self) -> None:
        await self.client.close()
