"""The Lua scripts of the Redis velocity counters (:mod:`.redis_counters`, which documents the
layout). Each script is one round trip and runs atomically; the functions below take their
arguments from ``ARGV`` at an offset, so that ``COUNT`` runs a read and a record in one
script with the same code as ``READ`` and ``RECORD`` alone.
"""

from __future__ import annotations

PLACE_TTL = 31 * 86400

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

#: ``read_counts(A, base)``: A[base] m (keys), A[base+1] w (widths), the m counter hashes,
#: then per width: width, first bucket at ``now``, span; then the place keys ('' for none), to
#: the end of A. Returns per key and width {n, s}, then per place {lat, lon, at}.
READ_FN = """
local function read_counts(A, base)
  local m, w = tonumber(A[base]), tonumber(A[base + 1])
  local out = {}
  for k = 1, m do
    local h = A[base + 1 + k]
    for i = 0, w - 1 do
      local width, first = A[base + 2 + m + 3 * i], tonumber(A[base + 3 + m + 3 * i])
      local below = width .. ':' .. string.format('%d', first - tonumber(width))
      local fields = {width .. 'n', width .. 's', below .. 'n', below .. 's', width .. 'lo'}
      local v = redis.call('HMGET', h, unpack(fields))
      local lo = tonumber(v[5])
      if lo == nil or lo < first - tonumber(width) then  -- time moved on: trim, then read again
        trim(h, width, first, tonumber(A[base + 4 + m + 3 * i]), lo)
        v = redis.call('HMGET', h, unpack(fields))
      end
      out[#out + 1] = (tonumber(v[1]) or 0) - (tonumber(v[3]) or 0)
      out[#out + 1] = string.format('%d', (tonumber(v[2]) or 0) - (tonumber(v[4]) or 0))
    end
  end
  for p = base + 2 + m + 3 * w, #A do
    if A[p] ~= '' then
      out[#out + 1] = redis.call('HMGET', A[p], 'lat', 'lon', 'at')
    end
  end
  return out
end
"""

#: ``record(K, A, base)``: K = seen, then n counter hashes, then place keys. A[base...]: seen
#: ttl, amount, n, at, lat, lon, hash ttl, w (widths), then per width: width, bucket of ``at``,
#: first bucket at ``at``, span. 1 when counted, 0 when the event id was counted already.
RECORD_FN = """
local function record(K, A, base)
  if not redis.call('SET', K[1], '1', 'NX', 'EX', A[base]) then
    return 0
  end
  local n, w = tonumber(A[base + 2]), tonumber(A[base + 7])
  for i = 1, n do
    local h = K[1 + i]
    for k = 0, w - 1 do
      local width, bucket = A[base + 8 + 4 * k], tonumber(A[base + 9 + 4 * k])
      local lo = tonumber(redis.call('HGET', h, width .. 'lo'))
      lo = trim(h, width, tonumber(A[base + 10 + 4 * k]), tonumber(A[base + 11 + 4 * k]), lo)
      if bucket >= lo then
        local fb = width .. ':' .. A[base + 9 + 4 * k]
        redis.call('HINCRBY', h, fb .. 'n', 1)
        redis.call('HINCRBY', h, fb .. 's', A[base + 1])
        redis.call('HINCRBY', h, width .. 'n', 1)
        redis.call('HINCRBY', h, width .. 's', A[base + 1])
      end
    end
    redis.call('EXPIRE', h, A[base + 6])
  end
  for j = n + 2, #K do
    local seen = redis.call('HGET', K[j], 'at')
    if not seen or tonumber(seen) <= tonumber(A[base + 3]) then
      redis.call('HSET', K[j], 'lat', A[base + 4], 'lon', A[base + 5], 'at', A[base + 3])
      redis.call('EXPIRE', K[j], PLACE_TTL)
    end
  end
  return 1
end
""".replace("PLACE_TTL", str(PLACE_TTL))

READ = TRIM + READ_FN + "\nreturn read_counts(ARGV, 1)\n"
RECORD = TRIM + RECORD_FN + "\nreturn record(KEYS, ARGV, 1)\n"

#: One read and one record: ARGV[1] is r, the record's argument count; the record's
#: arguments follow, then the read's. Returns the read's reply, then 1 or 0 (counted), then
#: each place key's previous {lat, lon, at} (for a release to put back).
COUNT = (
    TRIM
    + READ_FN
    + RECORD_FN
    + """
local out = read_counts(ARGV, tonumber(ARGV[1]) + 2)
local previous = {}
for j = tonumber(ARGV[4]) + 2, #KEYS do
  previous[#previous + 1] = redis.call('HMGET', KEYS[j], 'lat', 'lon', 'at')
end
out[#out + 1] = record(KEYS, ARGV, 2)
for _, v in ipairs(previous) do
  out[#out + 1] = v
end
return out
"""
)

#: KEYS: seen, n counter hashes, place keys. ARGV: amount, at (as recorded), n, w, then per
#: width: width, bucket; then per place key: the previous lat, lon, at ('' for no place).
#: Undoes a record once (the seen key goes): its buckets and totals lose it where they
#: still hold it, and each place goes back unless a later transaction moved it.
RELEASE = """
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
local n, w = tonumber(ARGV[3]), tonumber(ARGV[4])
local minus = string.format('%d', -tonumber(ARGV[1]))
for i = 1, n do
  local h = KEYS[1 + i]
  for k = 0, w - 1 do
    local width, bucket = ARGV[5 + 2 * k], ARGV[6 + 2 * k]
    local lo = tonumber(redis.call('HGET', h, width .. 'lo'))
    local fb = width .. ':' .. bucket
    if lo ~= nil and tonumber(bucket) >= lo and redis.call('HEXISTS', h, fb .. 'n') == 1 then
      redis.call('HINCRBY', h, fb .. 'n', -1)
      redis.call('HINCRBY', h, fb .. 's', minus)
      redis.call('HINCRBY', h, width .. 'n', -1)
      redis.call('HINCRBY', h, width .. 's', minus)
    end
  end
end
local p = 5 + 2 * w
for j = n + 2, #KEYS do
  if redis.call('HGET', KEYS[j], 'at') == ARGV[2] then
    if ARGV[p] == '' then
      redis.call('DEL', KEYS[j])
    else
      redis.call('HSET', KEYS[j], 'lat', ARGV[p], 'lon', ARGV[p + 1], 'at', ARGV[p + 2])
    end
  end
  p = p + 3
end
return 1
"""
