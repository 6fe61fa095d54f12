-- GCRA reservation for one bucket, atomic (a script runs alone), on Redis's clock.
-- KEYS[1]  the bucket; its value is the TAT, microseconds since the Unix epoch
-- ARGV[1]  emission interval, microseconds (>= 1)
-- ARGV[2]  tolerance: (burst - 1) intervals, microseconds
-- ARGV[3]  maximum wait, microseconds
-- Returns {1, wait} when a slot `wait` microseconds from now was reserved,
--         {0, wait} when that slot is further than the maximum wait (nothing stored).
-- Every number stays below 2^53, so Lua's doubles hold them exactly.
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])

-- One clock for every replica: the server's, so their skew does not matter.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

-- A missing bucket (never used, or expired because idle) or a past TAT is a full burst.
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end

-- The request may start `tolerance` ahead of the TAT, never before now.
local slot = math.max(tat - tolerance, now)
local wait = slot - now
if wait > max_wait then
  return {0, wait}
end

-- Reserve: the TAT moves one interval past max(TAT, now). The key expires when the
-- bucket is idle again (TAT reached), where a missing key means the same thing.
local new_tat = tat + interval
local ttl_ms = math.max(1, math.ceil((new_tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
return {1, wait}
