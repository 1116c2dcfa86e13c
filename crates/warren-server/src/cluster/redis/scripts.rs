//! The Lua scripts that change shared state.
//!
//! INVARIANT(transition-once): each script runs atomically in Redis, so every transition it
//! reports (occupied, vacated, member added, member removed) happens exactly once
//! cluster-wide however many nodes race.
//!
//! Every subscription is recorded under the *instance* (a node id plus a per-registration
//! nonce) that made it. A leave only counts when the socket is still owned by the instance
//! asking, so the cleanup of a dead instance can never remove what a newer instance of the
//! same node has re-registered.

use fred::types::scripts::Script;

/// `bump(b, ch)`: the next version of a channel's subscription count. Redis' clock in
/// microseconds, and always above the channel's last version, so versions keep growing even
/// across a vacated channel (whose last version is forgotten) without a key per channel
/// that lives forever. Shared by the join, leave and reap scripts.
const VERSION_FN: &str = r#"
local function bump(b, ch)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local key = b .. ':cv'
  local v = math.max(now, tonumber(redis.call('HGET', key, ch) or '0') + 1)
  redis.call('HSET', key, ch, string.format('%d', v))
  return v
end
"#;

/// `leave(ch, sock, inst, relay, env, pub)` -> `{member_removed, vacated, subscription_count,
/// user_id, version}`; count -1 when the socket was not this instance's. A member's departure is
/// published from inside the script when `relay` is given, as the fields of an envelope whose
/// header (`env`) the caller made: no Pusher JSON is written here. Shared by the leave and
/// reap scripts.
const LEAVE_FN: &str = r#"
local b = KEYS[1]
-- relay: the presence relay channel prefix (`{prefix:app}:pev:`), '' when the caller
-- announces itself; env: the envelope header of the announcing node; pub: PUBLISH, or
-- SPUBLISH in Redis Cluster (the relay channel shares the app's slot).
local function leave(ch, sock, inst, relay, env, pub)
  local skey = b .. ':s:' .. ch
  local nkey = b .. ':n:' .. inst
  local entry = ch .. '\n' .. sock
  if redis.call('HGET', skey, sock) ~= inst then
    redis.call('SREM', nkey, entry)
    return {0, 0, -1, '', 0}
  end
  redis.call('HDEL', skey, sock)
  redis.call('SREM', nkey, entry)
  local removed, user = 0, ''
  local ukey = b .. ':u:' .. ch
  local u = redis.call('HGET', ukey, sock)
  if u then
    user = u
    redis.call('HDEL', ukey, sock)
    local mkey = b .. ':m:' .. ch
    if redis.call('HINCRBY', mkey, u, -1) <= 0 then
      redis.call('HDEL', mkey, u)
      redis.call('HDEL', b .. ':i:' .. ch, u)
      removed = 1
      -- INVARIANT(announcement-with-change): announced in the same atomic step as the change,
      -- so announcements of one channel reach every node in the order the changes happened. The envelope (see
      -- `cluster::envelope`) is `env` completed with the channel, kind 3 and the user id.
      if relay ~= '' then
        local len = string.char(math.floor(#ch / 256), #ch % 256)
        redis.call(pub, relay .. ch, env .. len .. ch .. '\3' .. u)
      end
    end
  end
  local n = redis.call('HINCRBY', b .. ':ch', ch, -1)
  local v = bump(b, ch)
  if n <= 0 then
    redis.call('HDEL', b .. ':ch', ch)
    redis.call('HDEL', b .. ':cv', ch)
    return {removed, 1, 0, user, v}
  end
  return {removed, 0, n, user, v}
end
"#;

/// `user_version(b)`: the version of a user's going online or offline, as `bump` but one
/// counter per app (`<base>:uv`): versions of every user of the app keep growing, so the
/// counter read with the statuses orders them against any notice (see `Inner::online`), and no
/// key per user lives forever. `be64(v)`: `v` as the envelope's big-endian u64.
/// INVARIANT(user-status-versioned): taken in the same script as the transition it versions.
const USER_VERSION_FN: &str = r#"
local function user_version(b)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local key = b .. ':uv'
  local v = math.max(now, tonumber(redis.call('GET', key) or '0') + 1)
  redis.call('SET', key, string.format('%d', v))
  return v
end
local function be64(v)
  local s = ''
  for _ = 1, 8 do
    s = string.char(v % 256) .. s
    v = math.floor(v / 256)
  end
  return s
end
-- The user's status notice: the envelope header `env` completed with the user's channel,
-- kind 6 (online) or 7 (offline) and the version (see `cluster::envelope`).
local function announce_user(relay, env, pub, u, kind, v)
  if relay == '' then return end
  local ch = '#server-to-user-' .. u
  local len = string.char(math.floor(#ch / 256), #ch % 256)
  redis.call(pub, relay .. ch, env .. len .. ch .. kind .. be64(v))
end
"#;

/// Signed-in users, per app: `<base>:uo` socket -> owning instance, `<base>:us` socket ->
/// user, `<base>:uc` user -> signed-in connections, `<base>:uv` the last version of a user's
/// going online or offline. A sign-in is also recorded in the
/// instance's `:n:` set, as `#user\n<socket>` (no channel is named `#user`), so the cleanup of
/// a dead instance signs its sockets out like it unsubscribes them.
///
/// `signout(sock, inst, relay, env, pub)` -> `{offline_version, user}` (version 0 when the
/// user is still online or the socket was not signed in): as `leave`, only counts when the
/// socket is `inst`'s, and publishes the user's going offline itself when `relay` is given.
const SIGNOUT_FN: &str = r#"
local function signout(sock, inst, relay, env, pub)
  local entry = '#user\n' .. sock
  if redis.call('HGET', b .. ':uo', sock) ~= inst then
    redis.call('SREM', b .. ':n:' .. inst, entry)
    return {0, ''}
  end
  redis.call('HDEL', b .. ':uo', sock)
  redis.call('SREM', b .. ':n:' .. inst, entry)
  local u = redis.call('HGET', b .. ':us', sock)
  if not u then return {0, ''} end
  redis.call('HDEL', b .. ':us', sock)
  if redis.call('HINCRBY', b .. ':uc', u, -1) > 0 then return {0, u} end
  redis.call('HDEL', b .. ':uc', u)
  local v = user_version(b)
  -- INVARIANT(announcement-with-change): see `leave`.
  announce_user(relay, env, pub, u, '\7', v)
  return {v, u}
end
"#;

/// KEYS[1] app base; ARGV sock, inst, user, node prefix (`<node id>~`), relay prefix ('' when
/// the caller announces itself), envelope header, publish command -> the version of the
/// user's going online when they came online, 0 when not (signed in elsewhere, or this socket
/// already was), -2 when another node owns the socket id. Signing in again after a
/// re-registration moves the socket to `inst`.
const SIGNIN: &str = r#"
local b = KEYS[1]
local sock, inst, user = ARGV[1], ARGV[2], ARGV[3]
local entry = '#user\n' .. sock
local owner = redis.call('HGET', b .. ':uo', sock)
if owner then
  if owner ~= inst then
    if string.sub(owner, 1, #ARGV[4]) ~= ARGV[4] then return -2 end
    redis.call('HSET', b .. ':uo', sock, inst)
    redis.call('SREM', b .. ':n:' .. owner, entry)
    redis.call('SADD', b .. ':n:' .. inst, entry)
  end
  return 0
end
redis.call('HSET', b .. ':uo', sock, inst)
redis.call('HSET', b .. ':us', sock, user)
redis.call('SADD', b .. ':n:' .. inst, entry)
if redis.call('HINCRBY', b .. ':uc', user, 1) == 1 then
  local v = user_version(b)
  -- INVARIANT(announcement-with-change): see `leave`.
  announce_user(ARGV[5], ARGV[6], ARGV[7], user, '\6', v)
  return v
end
return 0
"#;

/// KEYS[1] app base; ARGV sock, inst, relay prefix, envelope header, publish command.
/// (`signout` reads the app base `b`, which `LEAVE_FN` defines for the reap script.)
const SIGNOUT: &str = "return signout(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])";

/// KEYS[1] app base; ARGV ch, sock, inst, user ('' unless presence), info ('' = none),
/// max members, node prefix (`<node id>~`), relay channel ('' when the caller announces
/// itself), member_added envelope, publish command (PUBLISH or SPUBLISH). -> `{member_added,
/// occupied, count, version[, HGETALL info]}` or `{-1}` when full. Joining again (after a re-registration) moves ownership from an
/// earlier instance of the same node to `inst` and changes no count; a socket id owned by
/// another node (a collision) is never taken over.
const JOIN: &str = r#"
local b = KEYS[1]
local ch, sock, inst, user, info, max = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local skey = b .. ':s:' .. ch
local entry = ch .. '\n' .. sock
local owner = redis.call('HGET', skey, sock)
local added, occupied, n, v = 0, 0, 0, 0
if owner then
  if owner ~= inst then
    if string.sub(owner, 1, #ARGV[7]) ~= ARGV[7] then
      return {-2}
    end
    redis.call('HSET', skey, sock, inst)
    redis.call('SREM', b .. ':n:' .. owner, entry)
    redis.call('SADD', b .. ':n:' .. inst, entry)
  end
  n = tonumber(redis.call('HGET', b .. ':ch', ch) or '0')
  v = tonumber(redis.call('HGET', b .. ':cv', ch) or '0')
else
  if user ~= '' then
    local mkey = b .. ':m:' .. ch
    local refs = tonumber(redis.call('HGET', mkey, user) or '0')
    if refs == 0 and redis.call('HLEN', mkey) >= max then
      return {-1}
    end
    redis.call('HINCRBY', mkey, user, 1)
    redis.call('HSET', b .. ':u:' .. ch, sock, user)
    if refs == 0 then
      redis.call('HSET', b .. ':i:' .. ch, user, info)
      added = 1
      -- The arrival, published in the same atomic step as the change (see `leave`).
      if ARGV[8] ~= '' then
        redis.call(ARGV[10], ARGV[8], ARGV[9])
      end
    end
  end
  redis.call('HSET', skey, sock, inst)
  redis.call('SADD', b .. ':n:' .. inst, entry)
  n = redis.call('HINCRBY', b .. ':ch', ch, 1)
  v = bump(b, ch)
  if n == 1 then occupied = 1 end
end
if user ~= '' then
  return {added, occupied, n, v, redis.call('HGETALL', b .. ':i:' .. ch)}
end
return {added, occupied, n, v}
"#;

/// KEYS[1] app base; ARGV ch, sock, inst, relay prefix, envelope header, publish command.
const LEAVE: &str = "return leave(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])";

/// KEYS[1] app base; ARGV dead instance, batch size, relay prefix, envelope header, publish
/// command. Removes up
/// to a batch of the instance's
/// subscriptions and sign-ins, and gives back its connections (`quotas::REAP_CONNECTIONS`,
/// before this) -> `{remaining, {kind, channel, user, version, ...}}` with kind
/// `member_removed` (with the version of the change), `vacated` or `offline` (in place of the
/// channel, the offline version; 0 in place of the version). Batches keep each script short, however much a node held.
const REAP: &str = r#"
local set = b .. ':n:' .. ARGV[1]
local entries = redis.call('SPOP', set, tonumber(ARGV[2]))
local out = {}
for _, e in ipairs(entries) do
  local nl = string.find(e, '\n', 1, true)
  if nl then
    local ch, sock = string.sub(e, 1, nl - 1), string.sub(e, nl + 1)
    if ch == '#user' then
      local r = signout(sock, ARGV[1], ARGV[3], ARGV[4], ARGV[5])
      if r[1] > 0 then
        table.insert(out, 'offline'); table.insert(out, string.format('%d', r[1])); table.insert(out, r[2]); table.insert(out, 0)
      end
    else
      local r = leave(ch, sock, ARGV[1], ARGV[3], ARGV[4], ARGV[5])
      if r[1] == 1 then
        table.insert(out, 'member_removed'); table.insert(out, ch); table.insert(out, r[4]); table.insert(out, r[5])
      end
      if r[2] == 1 then
        table.insert(out, 'vacated'); table.insert(out, ch); table.insert(out, ''); table.insert(out, 0)
      end
    end
  end
end
return {redis.call('SCARD', set), out}
"#;

/// KEYS[1] app base; ARGV cursor, prefix, '1' to count presence users, page size
/// -> `{next cursor, {channel, subscription_count, user_count, ...}}` for the occupied
/// channels of one HSCAN page. A page at a time, so that listing a large app never holds
/// Redis for long: other commands run between the pages (the caller loops until the cursor
/// is '0', and drops the duplicates HSCAN may return).
const CHANNELS: &str = r#"
local b = KEYS[1]
local page = redis.call('HSCAN', b .. ':ch', ARGV[1], 'COUNT', ARGV[4])
local all = page[2]
local out = {}
local p = ARGV[2]
for i = 1, #all, 2 do
  local ch = all[i]
  if string.sub(ch, 1, #p) == p then
    local users = 0
    if ARGV[3] == '1' and string.sub(ch, 1, 9) == 'presence-' then
      users = redis.call('HLEN', b .. ':m:' .. ch)
    end
    table.insert(out, ch); table.insert(out, tonumber(all[i + 1])); table.insert(out, users)
  end
end
return {page[1], out}
"#;

/// KEYS[1] app base; ARGV ch -> `{subscription_count, user_count}`.
const CHANNEL: &str = r#"
local b = KEYS[1]
return {tonumber(redis.call('HGET', b .. ':ch', ARGV[1]) or '0'), redis.call('HLEN', b .. ':m:' .. ARGV[1])}
"#;

/// KEYS[1] app base; ARGV ch -> `{subscription_count, version}`.
const COUNT: &str = r#"
local b = KEYS[1]
return {tonumber(redis.call('HGET', b .. ':ch', ARGV[1]) or '0'), tonumber(redis.call('HGET', b .. ':cv', ARGV[1]) or '0')}
"#;

/// KEYS[1] the cache channel's key; ARGV name, data, ttl ms -> the event's sequence number:
/// Redis' clock in microseconds, above the previous event's (see `bump`), so numbers keep
/// growing after the cached event expired.
const CACHE_PUT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local s = math.max(now, tonumber(redis.call('HGET', KEYS[1], 's') or '0') + 1)
redis.call('HSET', KEYS[1], 'n', ARGV[1], 'd', ARGV[2], 's', string.format('%d', s))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return s
"#;

/// KEYS[1] the cache channel's key -> `{name, data, seq, ttl ms}`, or `{}` when nothing is
/// kept. One script, so the event and its remaining time are read together.
const CACHE_GET: &str = r#"
local v = redis.call('HMGET', KEYS[1], 'n', 'd', 's')
if not v[1] then return {} end
return {v[1], v[2], v[3], redis.call('PTTL', KEYS[1])}
"#;

/// Current Redis time in ms, shared by the registry scripts so no node's clock matters.
const NOW_FN: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"#;

/// KEYS nodes, owner; ARGV instance, timeout ms, previous instance of this process ('' at
/// start). Takes the node id unless another live instance holds it -> `{1, instance}`, or
/// `{0, holder}`. A process replacing its own previous instance may always take it over.
const REGISTER: &str = r#"
local owner = redis.call('GET', KEYS[2])
local now = now_ms()
if owner and owner ~= ARGV[1] and owner ~= ARGV[3] then
  local due = redis.call('ZSCORE', KEYS[1], owner)
  if due and tonumber(due) >= now then
    return {0, owner}
  end
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return {1, ARGV[1]}
"#;

/// KEYS nodes, owner, reaping lock of the instance; ARGV instance, timeout ms -> 1 alive, 0
/// when this instance lost its registration (reaped or being reaped, Redis restarted, or the
/// id taken) and must register anew.
const HEARTBEAT: &str = r#"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local now = now_ms()
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"#;

/// KEYS nodes, reaping lock; ARGV instance, claimer, lock ms -> 1 when the instance is still
/// overdue and this caller now holds the right to clean it up. Checking and claiming in one
/// step means an instance whose heartbeat arrived meanwhile is never reaped.
const CLAIM: &str = r#"
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) >= now_ms() then return 0 end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
return 0
"#;

/// KEYS nodes -> instances overdue for their heartbeat (at most 100 a call).
const DEAD: &str = r#"
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, 100)
"#;

/// KEYS nodes, instance apps, node owner; ARGV instance. Forgets a cleaned-up (or departed)
/// instance, and frees its node id unless a newer instance holds it.
const FORGET: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
if redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('DEL', KEYS[3])
end
return 1
"#;

pub struct Scripts {
    pub join: Script,
    pub leave: Script,
    pub reap: Script,
    pub sign_in: Script,
    pub sign_out: Script,
    pub channels: Script,
    pub channel: Script,
    pub count: Script,
    pub cache_put: Script,
    pub cache_get: Script,
    pub register: Script,
    pub heartbeat: Script,
    pub claim: Script,
    pub dead: Script,
    pub forget: Script,
}

impl Scripts {
    pub fn new() -> Self {
        let with_leave = |body: &str| Script::from_lua(format!("{VERSION_FN}\n{LEAVE_FN}\n{body}"));
        let with_now = |body: &str| Script::from_lua(format!("{NOW_FN}\n{body}"));
        Self {
            join: Script::from_lua(format!("{VERSION_FN}\n{JOIN}")),
            leave: with_leave(LEAVE),
            reap: with_leave(&format!(
                "{USER_VERSION_FN}\n{SIGNOUT_FN}\n{}\n{REAP}",
                super::quotas::REAP_CONNECTIONS
            )),
            sign_in: Script::from_lua(format!("{USER_VERSION_FN}\n{SIGNIN}")),
            sign_out: Script::from_lua(format!(
                "local b = KEYS[1]\n{USER_VERSION_FN}\n{SIGNOUT_FN}\n{SIGNOUT}"
            )),
            channels: Script::from_lua(CHANNELS),
            channel: Script::from_lua(CHANNEL),
            count: Script::from_lua(COUNT),
            cache_put: Script::from_lua(CACHE_PUT),
            cache_get: Script::from_lua(CACHE_GET),
            register: with_now(REGISTER),
            heartbeat: with_now(HEARTBEAT),
            claim: with_now(CLAIM),
            dead: with_now(DEAD),
            forget: Script::from_lua(FORGET),
        }
    }
}
