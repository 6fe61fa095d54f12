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
//! | `P:d:<id>` | hash | a queued delivery: `ep wid body ca att nb [err] [sid]` |
//! | `P:dl:<id>` | hash | a dead letter: the delivery's fields and `reason dead [status] [resp]` |
//! | `P:dead` | sorted set | every dead letter id, scored by id |
//! | `P:dead:<endpoint>` | sorted set | the endpoint's dead letter ids, scored by id |
//!
//! `sid` is the delivery's stream entry id while it is in the stream; a rescheduled delivery
//! has none and sits in `P:z:<endpoint>` until a lease moves it back. Every script takes the
//! prefix as `ARGV[1]`.

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
-- Queues dead letter `id` again: attempts reset, same webhook id, due at once.
local function revive(id, now)
  local l = lkey(id)
  local ep = redis.call('HGET', l, 'ep')
  if not ep then return false end
  local d = dkey(id)
  redis.call('RENAME', l, d)
  redis.call('HDEL', d, 'reason', 'dead', 'status', 'resp', 'err')
  redis.call('HSET', d, 'att', 0, 'ca', now)
  push(ep, id, 0)
  redis.call('ZREM', DEAD, id)
  redis.call('ZREM', deadkey(ep), id)
  redis.call('SADD', ENDPOINTS, ep)
  return ep
end
"#;

/// ARGV: P, has dedupe key ('1'/'0'), dedupe key, window ms, now ms, n, then n × (endpoint,
/// webhook id, body, created at). Returns the new ids, or nil for a duplicate (then nothing
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
  local b = 7 + i * 4
  local ep = ARGV[b]
  local id = redis.call('INCR', P .. ':next_id')
  redis.call('HSET', dkey(id), 'ep', ep, 'wid', ARGV[b + 1], 'body', ARGV[b + 2],
    'ca', ARGV[b + 3], 'att', 0)
  push(ep, id, now)
  redis.call('SADD', ENDPOINTS, ep)
  ids[#ids + 1] = id
end
return ids
"#;

/// ARGV: P, has dedupe key ('1'/'0'), dedupe key, window ms, now ms, endpoint, webhook id,
/// body, created at, reason. Writes one delivery straight into the dead letters (never into
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
redis.call('ZADD', DEAD, id, id)
redis.call('ZADD', deadkey(ep), id, id)
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

/// ARGV: P, id. Returns 1, or 0 when the delivery is not queued.
const COMPLETE: &str = r#"
local id = ARGV[2]
local ep = redis.call('HGET', dkey(id), 'ep')
if not ep then return 0 end
unqueue(id, ep)
redis.call('DEL', dkey(id))
tidy(ep)
return 1
"#;

/// ARGV: P, id, not before ms, attempts, has error ('1'/'0'), error. Returns 1 or 0.
const RESCHEDULE: &str = r#"
local id = ARGV[2]
local d = dkey(id)
local ep = redis.call('HGET', d, 'ep')
if not ep then return 0 end
unqueue(id, ep)
redis.call('HSET', d, 'nb', ARGV[3], 'att', ARGV[4])
if ARGV[5] == '1' then redis.call('HSET', d, 'err', ARGV[6]) else redis.call('HDEL', d, 'err') end
redis.call('ZADD', zkey(ep), ARGV[3], id)
return 1
"#;

/// ARGV: P, id, reason, status ('' for none), has response ('1'/'0'), response, now ms.
/// Returns 1 or 0.
const DEAD_LETTER: &str = r#"
local id = ARGV[2]
local ep = redis.call('HGET', dkey(id), 'ep')
if not ep then return 0 end
unqueue(id, ep)
bury(id, ep, ARGV[3], ARGV[7])
local l = lkey(id)
-- The attempt that gave up counts.
redis.call('HINCRBY', l, 'att', 1)
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

/// ARGV: P, id, now ms. Returns the endpoint, or nil when there is no such dead letter.
const REPLAY: &str = r#"
return revive(ARGV[2], ARGV[3])
"#;

/// ARGV: P, id. Removes dead letter `id` for good. Returns its endpoint, or nil when there
/// is no such dead letter.
const DELETE_DEAD_LETTER: &str = r#"
local id = ARGV[2]
local l = lkey(id)
local ep = redis.call('HGET', l, 'ep')
if not ep then return false end
redis.call('DEL', l)
redis.call('ZREM', DEAD, id)
redis.call('ZREM', deadkey(ep), id)
return ep
"#;

/// ARGV: P, endpoint, now ms. Returns how many dead letters were queued again.
const REPLAY_ENDPOINT: &str = r#"
local n = 0
for _, id in ipairs(redis.call('ZRANGE', deadkey(ARGV[2]), 0, -1)) do
  if revive(id, ARGV[3]) then n = n + 1 end
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

/// ARGV: P, one endpoint ('1'/'0'), endpoint, limit. Returns dead letters as flat arrays
/// `id, field, value, …`, oldest delivery first.
const DEAD_LETTERS: &str = r#"
local limit = tonumber(ARGV[4])
if limit <= 0 then return {} end
local index = DEAD
if ARGV[2] == '1' then index = deadkey(ARGV[3]) end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', index, 0, limit - 1)) do
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

/// The loaded scripts (each sent by hash, loaded on `NOSCRIPT`).
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
}

impl Scripts {
    pub(super) fn new() -> Self {
        let script = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
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
        }
    }
}
