"""Nonces and token buckets in Redis: one Lua script, so one round trip per gateway call.

The script claims the nonce (``SET NX PX``) and, when it was unused, reads every bucket,
refills it to ``now``, and takes a token from each only if all have one. Redis runs a
script atomically, so processes and hosts sharing the Redis see one order of calls.
Each bucket key expires when the bucket would be full again, so idle buckets vanish.

All keys of one call carry the app in a hash tag (``{app}``), so the script also runs
on Redis Cluster, where a script's keys must share a slot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from mpaas.gateway.admission import Bucket, Rate, Verdict
from mpaas.gateway.resp import Resp, RespError, encode

#: KEYS[1] nonce, KEYS[2..] buckets; ARGV[1] nonce ttl ms, ARGV[2] now (s), then per bucket
#: its capacity and refill (tokens/s). Returns 1 (admitted), 0 (a used nonce), or, when a
#: bucket is empty, "INDEX WAIT" (its 1-based index, seconds until it has a token): the
#: common answers are one integer, the cheapest reply to parse.
SCRIPT = """
if KEYS[1] ~= '' then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
    return 0
  end
end
local now = tonumber(ARGV[2])
local n = #KEYS - 1
local level, at = {}, {}
for i = 1, n do
  local cap = tonumber(ARGV[1 + 2 * i])
  local rate = tonumber(ARGV[2 + 2 * i])
  local state = redis.call('HMGET', KEYS[i + 1], 't', 'u')
  local tokens, updated = tonumber(state[1]), tonumber(state[2])
  if tokens == nil or updated == nil then
    tokens, updated = cap, now
  end
  if now > updated then
    tokens = math.min(cap, tokens + (now - updated) * rate)
    updated = now
  end
  if tokens < 1 then
    return tostring(i) .. ' ' .. tostring((1 - tokens) / rate)
  end
  level[i], at[i] = tokens - 1, updated
end
for i = 1, n do
  local cap = tonumber(ARGV[1 + 2 * i])
  local rate = tonumber(ARGV[2 + 2 * i])
  redis.call('HSET', KEYS[i + 1], 't', tostring(level[i]), 'u', tostring(at[i]))
  redis.call('PEXPIRE', KEYS[i + 1], math.ceil((cap - level[i]) / rate * 1000) + 1000)
end
return 1
"""


def bulk(text: str) -> str:
    """One ASCII argument as a RESP bulk string."""
    return f"${len(text)}\r\n{text}\r\n"


class RedisAdmission:
    """:class:`mpaas.gateway.admission.Admission` on Redis, through :class:`mpaas.gateway.resp.Resp`."""

    def __init__(self, url: str, prefix: str = "mpaas:", timeout: float = 2.0) -> None:
        self.prefix = prefix
        self.client = Resp(url, timeout)
        self._rates: dict[Rate, str] = {}
        self.sha = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()  # the script id
        self._heads: dict[int, str] = {}

    async def admit(
        self, nonce_key: str, expires_at: float, buckets: Sequence[Bucket], now: float
    ) -> Verdict:
        prefix = self.prefix
        keys = [prefix + nonce_key if nonce_key else "", *[prefix + b.key for b in buckets]]
        # The frame is written here, not through the generic encoder: the command, the script
        # id and each rate's arguments are formatted once and reused (keys are ASCII).
        ttl, at = str(max(1, int((expires_at - now) * 1000))), repr(now)
        parts = [self._heads.get(len(buckets)) or self._head(len(buckets))]
        parts += [f"${len(k)}\r\n{k}\r\n" for k in keys]
        parts += [bulk(ttl), bulk(at)]
        parts += [self._rates.get(b.rate) or self._rate_args(b.rate) for b in buckets]
        text = "".join(parts)
        if text.isascii():  # O(1) in CPython; lengths in characters are lengths in bytes
            frame = text.encode()
        else:
            rates = [str(x) for b in buckets for x in (b.rate.count, repr(b.rate.refill))]
            frame = encode("EVALSHA", self.sha, len(keys), *keys, ttl, at, *rates)
        try:
            reply = await self.client.call_frame(frame)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            await self.client.call("SCRIPT", "LOAD", SCRIPT)
            reply = await self.client.call_frame(frame)
        if reply == 1:
            return Verdict(True)
        if reply == 0:
            return Verdict(False)
        index, wait = reply.split(b" ")
        return Verdict(True, buckets[int(index) - 1].scope, float(wait))

    def _head(self, buckets: int) -> str:
        """``*N`` and the command, the script id and the number of keys, for ``buckets`` buckets."""
        count = 3 + (buckets + 1) + 2 + 2 * buckets  # EVALSHA sha numkeys, keys, ttl and now, rates
        head = self._heads[buckets] = f"*{count}\r\n" + "".join(
            bulk(a) for a in ("EVALSHA", self.sha, str(buckets + 1))
        )
        return head

    def _rate_args(self, rate: Rate) -> str:
        args = self._rates[rate] = bulk(str(rate.count)) + bulk(repr(rate.refill))
        return args

    async def claim(self, key: str, expires_at: float, now: float) -> bool:
        return (await self.admit(key, expires_at, (), now)).fresh

    async def take(self, buckets: Sequence[Bucket], now: float) -> Verdict:
        return await self.admit("", now, buckets, now)

    async def sweep(self, now: float) -> None:
        return None  # keys expire by themselves

    async def ping(self) -> None:
        await self.client.call("PING")

    async def close(self) -> None:
        await self.client.close()
