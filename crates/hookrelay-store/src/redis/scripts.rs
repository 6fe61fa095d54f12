//! The Lua scripts: every operation that touches more than one key runs as one script, so it
//! is atomic for every replica and a failure leaves nothing half done.
//!
//! Key layout (prefix `P`, default `hookrelay`; all built here, in [`PRELUDE`]):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:next_id` | string | last allocated delivery id (`INCR`) |
//! | `P:dd:<dedupe key>` | string | a provider event seen within its window (`SET NX PX`) |
//! | `P:use:<token>` | string | a one-time token used within its TTL (`SET NX PX`, no script) |
//! | `P:endpoints` | set | endpoints with queued deliveries |
//! | `P:q:<endpoint>` | stream, group `lanes` | due deliveries: entries `id`, `nb` (not before) |
//! | `P:z:<endpoint>` | sorted set | rescheduled deliveries, scored by not-before (ms) |
//! | `P:d:<id>` | hash | a queued delivery: `ep wid body ca att nb [err] [sid] [rp] [tp]` (`tp`: the trace context) |
//! | `P:dl:<id>` | hash | a dead letter: the delivery's fields and `reason dead [status] [resp]` |
//! | `P:dead` | sorted set | every dead letter id, scored by id |
//! | `P:dead:<endpoint>` | sorted set | the endpoint's dead letter ids, scored by id |
//! | `P:h:<id>` | hash | a delivered delivery (history): its queued fields but `sid`, and `sz` |
//! | `P:a:<id>` | list | history entries, oldest first: postcard `Attempt`s, the newest `KEEP` |
//! | `P:all` | sorted set | every delivery held (queued, delivered or dead), scored by id |
//! | `P:w:<webhook id>` | sorted set | ids of the deliveries with that `webhook-id`, scored by id |
//! | `P:done` | sorted set | the delivered ids (`P:h:<id>`), scored by when they were delivered (Redis's clock, ms): the sweep's order |
//! | `P:hbytes` | string | the history's size: the sum of the delivered deliveries' `sz` |
//!
//! `sid` is the delivery's stream entry id while it is in the stream; a rescheduled delivery
//! has none and sits in `P:z:<endpoint>` until a lease moves it back. `rp` is set while the
//! newest history entry is a replay (set by a replay, removed by the next attempt kept).
//! `KEEP` is [`MAX_ATTEMPTS_KEPT`]. Every script takes the prefix as `ARGV[1]`.
//!
//! A delivery is in exactly one of `P:d:<id>` (queued, leased or not), `P:dl:<id>` (a dead
//! letter) and `P:h:<id>` (delivered), so "`P:d:<id>` exists" still means queued. Completing
//! renames `P:d:<id>` to `P:h:<id>` and records its size `sz`: the length of every field
//! name and value of the hash (the body, the webhook-id, …) plus the length of every entry
//! of `P:a:<id>`, added to `P:hbytes` then and taken off when the sweep removes it. The
//! index entries (`P:all`, `P:w:<webhook id>`, `P:done`) and Redis's own overhead per key are
//! not counted. A delivery leaves `P:all`, `P:w:<webhook id>` and `P:a:<id>` with its record
//! (history sweep, dead letter deleted); the other paths keep them.

use crate::MAX_ATTEMPTS_KEPT;
use ::redis::Script;

/// Helpers shared by every script.
const PRELUDE: &str = r#"
local P = ARGV[1]
local G = 'lanes'
local ENDPOINTS = P .. ':endpoints'
local DEAD = P .. ':dead'
local function qkey(ep) return P .. ':q:' .. ep end
local function zkey(ep) return P .. ':z:' .. ep end
local function dkey(id) return P .. ':d:' .. id end
local function lkey(id) return P .. ':dl:' .. id end
local function deadkey(ep) return P .. ':dead:' .. ep end
local ALL = P .. ':all'
local DONE = P .. ':done'
-- Bytes a delivered delivery costs Redis beyond its fields and history entries.
local OVERHEAD = 1024
local HBYTES = P .. ':hbytes'
local function hkey(id) return P .. ':h:' .. id end
local function akey(id) return P .. ':a:' .. id end
local function wkey(wid) return P .. ':w:' .. wid end
-- Lists new delivery `id` with webhook id `wid` in the history's indexes.
local function index(id, wid)
  redis.call('ZADD', ALL, id, id)
  redis.call('ZADD', wkey(wid), id, id)
end
-- Appends `entry` to the history of delivery `id`, whose record is the hash `rec`, and keeps
-- the newest KEEP entries; `replay`: whether the entry is a replay.
local function note(rec, id, entry, replay)
  local a = akey(id)
  redis.call('RPUSH', a, entry)
  redis.call('LTRIM', a, -KEEP, -1)
  if replay then redis.call('HSET', rec, 'rp', 1) else redis.call('HDEL', rec, 'rp') end
end
-- Removes delivery `id`, whose record is the hash `rec`, with its history and index entries.
local function forget(rec, id)
  local wid = redis.call('HGET', rec, 'wid')
  redis.call('DEL', rec, akey(id))
  redis.call('ZREM', ALL, id)
  if wid then redis.call('ZREM', wkey(wid), id) end
end
local function ensure(q)
  if redis.call('EXISTS', q) == 0 then
    redis.call('XGROUP', 'CREATE', q, G, '0', 'MKSTREAM')
  end
end
-- Appends delivery `id` to its endpoint's stream, due since `nb`.
local function push(ep, id, nb)
  local q = qkey(ep)
  ensure(q)
  local sid = redis.call('XADD', q, '*', 'id', id, 'nb', nb)
  redis.call('HSET', dkey(id), 'sid', sid, 'nb', nb)
end
-- Takes queued delivery `id` out of its stream (acknowledged) or out of the delayed set.
local function unqueue(id, ep)
  local d = dkey(id)
  local sid = redis.call('HGET', d, 'sid')
  if sid then
    local q = qkey(ep)
    redis.call('XACK', q, G, sid)
    redis.call('XDEL', q, sid)
    redis.call('HDEL', d, 'sid')
  else
    redis.call('ZREM', zkey(ep), id)
  end
end
-- Whether a caller may record an outcome of queued delivery `id` of endpoint `ep`: with a
-- lease (`sid`, its stream entry, not ''), only while that entry is still the delivery's
-- and pending for consumer `c`: a replica whose lease another took over (it stopped
-- renewing for longer than the visibility timeout) must not overwrite the new holder's
-- outcome. Without one (''), only while no consumer holds a lease on it renewed within
-- `vis` ms.
local function may_record(id, ep, sid, c, vis)
  local cur = redis.call('HGET', dkey(id), 'sid')
  if sid == '' then
    if not cur then return true end
    local p = redis.call('XPENDING', qkey(ep), G, cur, cur, 1)
    return #p == 0 or tonumber(p[1][3]) >= tonumber(vis)
  end
  if cur ~= sid then return false end
  local p = redis.call('XPENDING', qkey(ep), G, sid, sid, 1)
  return #p == 1 and p[1][2] == c
end
-- Forgets an endpoint that has nothing queued any more.
local function tidy(ep)
  if redis.call('XLEN', qkey(ep)) == 0 and redis.call('ZCARD', zkey(ep)) == 0 then
    redis.call('SREM', ENDPOINTS, ep)
  end
end
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end
-- Moves queued delivery `id` (already out of its stream or delayed set) to the dead letters.
local function bury(id, ep, reason, now)
  local l = lkey(id)
  redis.call('RENAME', dkey(id), l)
  redis.call('HDEL', l, 'sid')
  redis.call('HSET', l, 'reason', reason, 'dead', now)
  redis.call('ZADD', DEAD, id, id)
  redis.call('ZADD', deadkey(ep), id, id)
end
-- Queues dead letter `id` again: attempts reset, same webhook id, due at once, with history
-- entry `entry` (the replay).
local function revive(id, now, entry)
  local l = lkey(id)
  local ep = redis.call('HGET', l, 'ep')
  if not ep then return false end
  local d = dkey(id)
  redis.call('RENAME', l, d)
  redis.call('HDEL', d, 'reason', 'dead', 'status', 'resp', 'err')
  redis.call('HSET', d, 'att', 0, 'ca', now)
  note(d, id, entry, true)
  push(ep, id, 0)
  redis.call('ZREM', DEAD, id)
  redis.call('ZREM', deadkey(ep), id)
  redis.call('SADD', ENDPOINTS, ep)
  return ep
end
"#;

/// ARGV: P, has dedupe key ('1'/'0'), dedupe key, window ms, now ms, n, then n × (endpoint,
/// webhook id, body, created at, trace context ('' for none)). Returns the new ids, or nil for a duplicate (then nothing
/// was written).
const ENQUEUE: &str = r#"
if ARGV[2] == '1' then
  if not redis.call('SET', P .. ':dd:' .. ARGV[3], '1', 'NX', 'PX', ARGV[4]) then
    return false
  end
end
local now = ARGV[5]
local ids = {}
for i = 0, tonumber(ARGV[6]) - 1 do
  local b = 7 + i * 5
  local ep = ARGV[b]
  local id = redis.call('INCR', P .. ':next_id')
  redis.call('HSET', dkey(id), 'ep', ep, 'wid', ARGV[b + 1], 'body', ARGV[b + 2],
    'ca', ARGV[b + 3], 'att', 0)
  if ARGV[b + 4] ~= '' then redis.call('HSET', dkey(id), 'tp', ARGV[b + 4]) end
  index(id, ARGV[b + 1])
  push(ep, id, now)
  redis.call('SADD', ENDPOINTS, ep)
  ids[#ids + 1] = id
end
return ids
"#;

/// ARGV: P, has dedupe key ('1'/'0'), dedupe key, window ms, now ms, endpoint, webhook id,
/// body, created at, reason, trace context ('' for none). Writes one delivery straight into the dead letters (never into
/// a stream). Returns its id, or nil for a duplicate (then nothing was written).
const ENQUEUE_DEAD_LETTER: &str = r#"
if ARGV[2] == '1' then
  if not redis.call('SET', P .. ':dd:' .. ARGV[3], '1', 'NX', 'PX', ARGV[4]) then
    return false
  end
end
local now, ep = ARGV[5], ARGV[6]
local id = redis.call('INCR', P .. ':next_id')
redis.call('HSET', lkey(id), 'ep', ep, 'wid', ARGV[7], 'body', ARGV[8], 'ca', ARGV[9],
  'att', 0, 'nb', now, 'reason', ARGV[10], 'dead', now)
if ARGV[11] ~= '' then redis.call('HSET', lkey(id), 'tp', ARGV[11]) end
redis.call('ZADD', DEAD, id, id)
redis.call('ZADD', deadkey(ep), id, id)
index(id, ARGV[7])
return id
"#;

/// ARGV: P, consumer, endpoint, now ms, max, visibility ms. Moves due rescheduled
/// deliveries into the stream, claims entries idle longer than the visibility timeout, then
/// reads new ones. Returns up to `max` records as flat arrays `id, field, value, …`.
const LEASE: &str = r#"
local consumer, ep, now, max, idle = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local q, z = qkey(ep), zkey(ep)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', z, id)
  local nb = redis.call('HGET', dkey(id), 'nb')
  if nb then push(ep, id, nb) end
end
if redis.call('EXISTS', q) == 0 then return {} end
local out = {}
local function take(entries)
  for _, e in ipairs(entries) do
    local sid, fields = e[1], e[2]
    local id = fields and field(fields, 'id')
    local rec = id and redis.call('HGETALL', dkey(id)) or {}
    if #rec == 0 then
      -- An entry without its record: nothing to deliver.
      redis.call('XACK', q, G, sid)
      redis.call('XDEL', q, sid)
    else
      table.insert(rec, 1, id)
      out[#out + 1] = rec
    end
  end
end
take(redis.call('XAUTOCLAIM', q, G, consumer, idle, '0-0', 'COUNT', max)[2])
if #out < max then
  local fresh = redis.call('XREADGROUP', 'GROUP', G, consumer, 'COUNT', max - #out,
    'STREAMS', q, '>')
  if fresh then take(fresh[1][2]) end
end
return out
"#;

/// ARGV: P, id, has attempt ('1'/'0'), history entry, lease's stream entry id ('' for
/// none), consumer, visibility timeout ms. Moves the delivery out of the queue into the
/// history (`P:h:<id>`, sized and counted in `P:hbytes`). Returns 1, or 0 when the delivery
/// is not queued or the caller may not record its outcome (`may_record`).
const COMPLETE: &str = r#"
local id = ARGV[2]
local d = dkey(id)
local ep = redis.call('HGET', d, 'ep')
if not ep then return 0 end
if not may_record(id, ep, ARGV[5], ARGV[6], ARGV[7]) then return 0 end
unqueue(id, ep)
if ARGV[3] == '1' then note(d, id, ARGV[4], false) end
local h = hkey(id)
redis.call('RENAME', d, h)
redis.call('HDEL', h, 'sid', 'rp')
local size = 0
for _, name in ipairs(redis.call('HKEYS', h)) do
  size = size + #name + redis.call('HSTRLEN', h, name)
end
for _, e in ipairs(redis.call('LRANGE', akey(id), 0, -1)) do size = size + #e end
-- Redis's own cost of the hash, the list and the index entries, about (see above).
size = size + OVERHEAD
redis.call('HSET', h, 'sz', size)
redis.call('INCRBY', HBYTES, size)
local t = redis.call('TIME')
redis.call('ZADD', DONE, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), id)
tidy(ep)
return 1
"#;

/// ARGV: P, id, not before ms, attempts, has error ('1'/'0'), error, has attempt ('1'/'0'),
/// history entry, lease's stream entry id ('' for none), consumer, visibility timeout ms.
/// Returns 1 or 0 (as `COMPLETE`).
const RESCHEDULE: &str = r#"
local id = ARGV[2]
local d = dkey(id)
local ep = redis.call('HGET', d, 'ep')
if not ep then return 0 end
if not may_record(id, ep, ARGV[9], ARGV[10], ARGV[11]) then return 0 end
unqueue(id, ep)
if ARGV[7] == '1' then note(d, id, ARGV[8], false) end
redis.call('HSET', d, 'nb', ARGV[3], 'att', ARGV[4])
if ARGV[5] == '1' then redis.call('HSET', d, 'err', ARGV[6]) else redis.call('HDEL', d, 'err') end
redis.call('ZADD', zkey(ep), ARGV[3], id)
return 1
"#;

/// ARGV: P, id, reason, status ('' for none), has response ('1'/'0'), response, now ms, has
/// attempt ('1'/'0'), history entry, lease's stream entry id ('' for none), consumer,
/// visibility timeout ms. Returns 1 or 0 (as `COMPLETE`).
const DEAD_LETTER: &str = r#"
local id = ARGV[2]
local ep = redis.call('HGET', dkey(id), 'ep')
if not ep then return 0 end
if not may_record(id, ep, ARGV[10], ARGV[11], ARGV[12]) then return 0 end
unqueue(id, ep)
if ARGV[8] == '1' then note(dkey(id), id, ARGV[9], false) end
bury(id, ep, ARGV[3], ARGV[7])
local l = lkey(id)
-- The attempt that gave up counts; a delivery never leased (its endpoint removed as it was
-- enqueued) had none.
if ARGV[10] ~= '' then redis.call('HINCRBY', l, 'att', 1) end
if ARGV[4] ~= '' then redis.call('HSET', l, 'status', ARGV[4]) end
if ARGV[5] == '1' then redis.call('HSET', l, 'resp', ARGV[6]) end
tidy(ep)
return 1
"#;

/// ARGV: P, endpoint, reason, now ms. Returns how many deliveries were dead-lettered.
const DEAD_LETTER_ENDPOINT: &str = r#"
local ep, reason, now = ARGV[2], ARGV[3], ARGV[4]
local q, z = qkey(ep), zkey(ep)
local n = 0
local function one(id)
  if id and redis.call('EXISTS', dkey(id)) == 1 then
    bury(id, ep, reason, now)
    n = n + 1
  end
end
if redis.call('EXISTS', q) == 1 then
  for _, e in ipairs(redis.call('XRANGE', q, '-', '+')) do one(field(e[2], 'id')) end
  redis.call('DEL', q)
end
for _, id in ipairs(redis.call('ZRANGE', z, 0, -1)) do one(id) end
redis.call('DEL', z)
redis.call('SREM', ENDPOINTS, ep)
return n
"#;

/// ARGV: P, id, now ms, history entry (the replay). Returns the endpoint, or nil when there
/// is no such dead letter.
const REPLAY: &str = r#"
return revive(ARGV[2], ARGV[3], ARGV[4])
"#;

/// ARGV: P, id. Removes dead letter `id` for good, with its history. Returns its endpoint,
/// or nil when there is no such dead letter.
const DELETE_DEAD_LETTER: &str = r#"
local id = ARGV[2]
local l = lkey(id)
local ep = redis.call('HGET', l, 'ep')
if not ep then return false end
forget(l, id)
redis.call('ZREM', DEAD, id)
redis.call('ZREM', deadkey(ep), id)
return ep
"#;

/// ARGV: P, endpoint, now ms, history entry (the replay). Returns how many dead letters were
/// queued again.
const REPLAY_ENDPOINT: &str = r#"
local n = 0
for _, id in ipairs(redis.call('ZRANGE', deadkey(ARGV[2]), 0, -1)) do
  if revive(id, ARGV[3], ARGV[4]) then n = n + 1 end
end
return n
"#;

/// ARGV: P, endpoint, now ms. Moves the endpoint's rescheduled deliveries due after `now`
/// into its stream, due at `now` (attempts and error kept), in id order, so the next lease
/// of any replica reads them. Leased ones are in the stream already and dead letters in
/// their own keys: neither moves. Returns how many moved.
const RETRY_NOW: &str = r#"
local ep, now = ARGV[2], ARGV[3]
local z = zkey(ep)
local ids = redis.call('ZRANGEBYSCORE', z, '(' .. now, '+inf')
table.sort(ids, function(a, b) return tonumber(a) < tonumber(b) end)
local n = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', z, id)
  if redis.call('EXISTS', dkey(id)) == 1 then
    push(ep, id, now)
    n = n + 1
  end
end
return n
"#;

/// ARGV: P, one endpoint ('1'/'0'), endpoint, limit, after id ('' for none). Returns dead
/// letters with a greater id as flat arrays `id, field, value, …`, oldest delivery first.
const DEAD_LETTERS: &str = r#"
local limit = tonumber(ARGV[4])
if limit <= 0 then return {} end
local index = DEAD
if ARGV[2] == '1' then index = deadkey(ARGV[3]) end
local from = '-inf'
if ARGV[5] ~= '' then from = '(' .. ARGV[5] end
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, from, '+inf', 'LIMIT', 0, limit)) do
  local rec = redis.call('HGETALL', lkey(id))
  if #rec > 0 then
    table.insert(rec, 1, id)
    out[#out + 1] = rec
  end
end
return out
"#;

/// ARGV: P, id. Returns the dead letter as a flat array `id, field, value, …`, or nil.
const DEAD_LETTER_BY_ID: &str = r#"
local rec = redis.call('HGETALL', lkey(ARGV[2]))
if #rec == 0 then return false end
table.insert(rec, 1, ARGV[2])
return rec
"#;

/// ARGV: P, consumer, endpoint, idle ms, stream ids…. Sets the idle time of the entries
/// this consumer still owns (0 renews a lease, a huge value releases it); returns the ids
/// it no longer owns.
const TOUCH: &str = r#"
local consumer, q = ARGV[2], qkey(ARGV[3])
local lost = {}
local exists = redis.call('EXISTS', q) == 1
for i = 5, #ARGV do
  local sid = ARGV[i]
  local p = exists and redis.call('XPENDING', q, G, sid, sid, 1) or {}
  if #p == 1 and p[1][2] == consumer then
    redis.call('XCLAIM', q, G, consumer, 0, sid, 'IDLE', ARGV[4], 'JUSTID')
  else
    lost[#lost + 1] = sid
  end
end
return lost
"#;

/// ARGV: P, endpoint, pending limit. Returns the earliest delayed score (or nil), the
/// not-before of the first entry not yet read by the group (or nil), and up to `limit`
/// pending entries as `{id, consumer, idle ms}`.
const NEXT_DUE: &str = r#"
local q, z = qkey(ARGV[2]), zkey(ARGV[2])
local delayed, unread, pending = false, false, {}
local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
if #first == 2 then delayed = first[2] end
if redis.call('EXISTS', q) == 1 then
  local last
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', q)) do
    if field(g, 'name') == G then last = field(g, 'last-delivered-id') end
  end
  if last then
    local e = redis.call('XRANGE', q, '(' .. last, '+', 'COUNT', 1)
    if #e == 1 then unread = field(e[1][2], 'nb') or '0' end
    for _, p in ipairs(redis.call('XPENDING', q, G, '-', '+', ARGV[3])) do
      pending[#pending + 1] = {p[1], p[2], p[3]}
    end
  end
end
return {delayed, unread, pending}
"#;

/// ARGV: P, cutoff ms, max bytes (0: no cap), batch. Goes through up to `batch` delivered
/// deliveries, the first delivered first, and removes each delivered before the cutoff, or
/// any while `P:hbytes` is over the cap, with its history and index entries; stops at the
/// first one delivered at or after the cutoff once within the cap. Returns how many it
/// removed and 1 when there may be more to look at (a whole batch went), else 0.
const SWEEP_HISTORY: &str = r#"
local cutoff, cap, batch = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local removed = 0
local done = redis.call('ZRANGE', DONE, 0, batch - 1, 'WITHSCORES')
local ids = {}
for i = 1, #done, 2 do
  local id, at = done[i], tonumber(done[i + 1])
  ids[#ids + 1] = id
  local h = hkey(id)
  local f = redis.call('HMGET', h, 'sz')
  local over = cap > 0 and (tonumber(redis.call('GET', HBYTES)) or 0) > cap
  if at >= cutoff and not over then return {removed, 0} end
  redis.call('ZREM', DONE, id)
  if redis.call('EXISTS', h) == 1 then
    forget(h, id)
    if redis.call('DECRBY', HBYTES, tonumber(f[1]) or 0) <= 0 then
      redis.call('DEL', HBYTES)
    end
    removed = removed + 1
  end
end
if #ids < batch then return {removed, 0} end
return {removed, 1}
"#;

/// Helpers of the scripts that read the history (after [`PRELUDE`]). A delivery is
/// answered as `{state, {id, field, value, …}, {entry, …}}`: its state's name
/// ([`DeliveryState::as_str`](crate::DeliveryState::as_str)), its hash and its history
/// entries, oldest first.
const HISTORY_PRELUDE: &str = r#"
-- Whether stream entry `sid` of endpoint `ep` is leased by a replica: pending in the group
-- and renewed within the visibility timeout `vis` (a released or abandoned lease is not).
local function leased(ep, sid, vis)
  local q = qkey(ep)
  if redis.call('EXISTS', q) == 0 then return false end
  local p = redis.call('XPENDING', q, G, sid, sid, 1)
  return #p == 1 and tonumber(p[1][3]) < vis
end
-- The key of delivery `id`'s record and what it is ('dead', 'queued' or 'delivered'), or
-- nil when the store has no such delivery.
local function locate(id)
  local k = lkey(id)
  if redis.call('EXISTS', k) == 1 then return k, 'dead' end
  k = dkey(id)
  if redis.call('EXISTS', k) == 1 then return k, 'queued' end
  k = hkey(id)
  if redis.call('EXISTS', k) == 1 then return k, 'delivered' end
  return nil
end
-- The state of the delivery whose record is `key`, of kind `kind`.
local function state(key, kind, vis)
  if kind ~= 'queued' then return kind end
  local f = redis.call('HMGET', key, 'ep', 'sid', 'rp')
  if f[1] and f[2] and leased(f[1], f[2], vis) then return 'in_flight' end
  if f[3] then return 'replayed' end
  return 'queued'
end
local function describe(id, key, st)
  local rec = redis.call('HGETALL', key)
  table.insert(rec, 1, id)
  return {st, rec, redis.call('LRANGE', akey(id), 0, -1)}
end
"#;

/// ARGV: P, visibility ms, id. Returns `{delivery}`, or `{}` when the store has none.
const HISTORY: &str = r#"
local id = ARGV[3]
local key, kind = locate(id)
if not key then return {} end
return {describe(id, key, state(key, kind, tonumber(ARGV[2])))}
"#;

/// ARGV: P, visibility ms, webhook id, last index (limit - 1). Returns the deliveries with
/// that webhook id, newest first.
const HISTORY_OF: &str = r#"
local vis, out = tonumber(ARGV[2]), {}
for _, id in ipairs(redis.call('ZREVRANGE', wkey(ARGV[3]), 0, ARGV[4])) do
  local key, kind = locate(id)
  if key then out[#out + 1] = describe(id, key, state(key, kind, vis)) end
end
return out
"#;

/// ARGV: P, visibility ms, highest score (`+inf` or `(<before>`), one endpoint ('1'/'0'),
/// endpoint, state ('' for any), has since ('1'/'0'), since ms, limit, scan limit. Walks
/// `P:all` from the newest down, at most `scan limit` ids. Returns `{next, deliveries}`:
/// `next` is the last id looked at when the page is full or the scan limit is reached,
/// else nil.
const HISTORIES: &str = r#"
local vis, max = tonumber(ARGV[2]), ARGV[3]
local ep = ARGV[4] == '1' and ARGV[5]
local want = ARGV[6]
local since = ARGV[7] == '1' and tonumber(ARGV[8])
local limit, budget = tonumber(ARGV[9]), tonumber(ARGV[10])
local out, looked = {}, 0
while looked < budget do
  local ids = redis.call('ZREVRANGEBYSCORE', ALL, max, '-inf', 'LIMIT', 0,
    math.min(256, budget - looked))
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    looked = looked + 1
    max = '(' .. id
    local key, kind = locate(id)
    if key then
      local f = redis.call('HMGET', key, 'ep', 'ca')
      local old = since and (tonumber(f[2]) or 0) < since
      if old and kind == 'delivered' then
        -- Received in id order: every older delivery was received before too (a replayed
        -- dead letter, queued again later, is the exception this misses).
        return {false, out}
      end
      if not old and (not ep or f[1] == ep) then
        local st = state(key, kind, vis)
        if want == '' or st == want then
          out[#out + 1] = describe(id, key, st)
          if #out >= limit then return {id, out} end
        end
      end
    end
    if looked >= budget then return {id, out} end
  end
end
return {false, out}
"#;

/// The loaded scripts (each sent by hash, loaded on `NOSCRIPT`).
/// ARGV: P, idle ms, this instance's consumer, endpoint names. Deletes from each endpoint's
/// consumer group the consumers that hold nothing (no pending entry) and have read nothing
/// for `idle` ms, this instance's aside: every start of a replica joins with a new name,
/// so the groups would grow with every restart. A consumer deleted while alive is made
/// again by its next read; one with pending entries is kept, as those are its leases.
/// Returns how many were deleted.
const PRUNE_CONSUMERS: &str = r#"
local idle, me, n = tonumber(ARGV[2]), ARGV[3], 0
for i = 4, #ARGV do
  local q = qkey(ARGV[i])
  local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', q, G)
  if ok then
    for _, c in ipairs(consumers) do
      local f = {}
      for j = 1, #c, 2 do f[c[j]] = c[j + 1] end
      if f['name'] ~= me and tonumber(f['pending']) == 0 and tonumber(f['idle']) >= idle then
        redis.call('XGROUP', 'DELCONSUMER', q, G, f['name'])
        n = n + 1
      end
    end
  end
end
return n
"#;

#[derive(Debug)]
pub(super) struct Scripts {
    pub(super) enqueue: Script,
    pub(super) enqueue_dead_letter: Script,
    pub(super) lease: Script,
    pub(super) complete: Script,
    pub(super) reschedule: Script,
    pub(super) dead_letter: Script,
    pub(super) dead_letter_endpoint: Script,
    pub(super) replay: Script,
    pub(super) replay_endpoint: Script,
    pub(super) delete_dead_letter: Script,
    pub(super) retry_now: Script,
    pub(super) dead_letters: Script,
    pub(super) dead_letter_by_id: Script,
    pub(super) touch: Script,
    pub(super) next_due: Script,
    pub(super) sweep_history: Script,
    pub(super) prune_consumers: Script,
    pub(super) history: Script,
    pub(super) history_of: Script,
    pub(super) histories: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        let script = |body: &str| {
            Script::new(&format!(
                "local KEEP = {MAX_ATTEMPTS_KEPT}\n{PRELUDE}{body}"
            ))
        };
        let reader = |body: &str| script(&format!("{HISTORY_PRELUDE}{body}"));
        Scripts {
            enqueue: script(ENQUEUE),
            enqueue_dead_letter: script(ENQUEUE_DEAD_LETTER),
            lease: script(LEASE),
            complete: script(COMPLETE),
            reschedule: script(RESCHEDULE),
            dead_letter: script(DEAD_LETTER),
            dead_letter_endpoint: script(DEAD_LETTER_ENDPOINT),
            replay: script(REPLAY),
            replay_endpoint: script(REPLAY_ENDPOINT),
            delete_dead_letter: script(DELETE_DEAD_LETTER),
            retry_now: script(RETRY_NOW),
            dead_letters: script(DEAD_LETTERS),
            dead_letter_by_id: script(DEAD_LETTER_BY_ID),
            touch: script(TOUCH),
            next_due: script(NEXT_DUE),
            sweep_history: script(SWEEP_HISTORY),
            prune_consumers: script(PRUNE_CONSUMERS),
            history: reader(HISTORY),
            history_of: reader(HISTORY_OF),
            histories: reader(HISTORIES),
        }
    }
}
