//! The Lua scripts that make each per-user operation atomic in the user's slot. Every key a
//! script names carries the user's hash tag (`{ns:u:<user>}`), so Redis Cluster runs it on the
//! one master that owns the user. Entries are 24 bytes (`entry.rs`), their first 8 bytes a
//! timestamp key whose byte order is the timestamp's order, so Lua compares them as strings.

/// Appends a batch (sorted by timestamp, ties in arrival order) to the history; bumps the
/// version, sets a new stamp nonce and the pending refresh marker; trims to the cap once the
/// history is `slack` entries over it. KEYS: history, meta. ARGV: cap, slack, nonce, seq, blob,
/// now_ms. Returns the new version.
pub(crate) const RECORD: &str = r#"
local h, m = KEYS[1], KEYS[2]
local cap, slack = tonumber(ARGV[1]), tonumber(ARGV[2])
local blob = ARGV[5]
local E = 24
local len = redis.call('STRLEN', h)
if len % E ~= 0 then
  return redis.error_reply('CONVERGEDB history ' .. h .. ' is ' .. len .. ' bytes, not a multiple of 24')
end
local newest = nil
if len > 0 then newest = redis.call('GETRANGE', h, len - E, len - E + 7) end
if newest == nil or string.sub(blob, 1, 8) >= newest then
  redis.call('APPEND', h, blob)
else
  local old = redis.call('GET', h)
  local out = {}
  local i, j, no, nn = 1, 1, #old, #blob
  while i <= no or j <= nn do
    if j > nn or (i <= no and string.sub(old, i, i + 7) <= string.sub(blob, j, j + 7)) then
      out[#out + 1] = string.sub(old, i, i + E - 1)
      i = i + E
    else
      out[#out + 1] = string.sub(blob, j, j + E - 1)
      j = j + E
    end
  end
  redis.call('SET', h, table.concat(out))
end
len = len + #blob
if len > (cap + slack) * E then
  redis.call('SET', h, redis.call('GETRANGE', h, len - cap * E, -1))
end
local v = redis.call('HINCRBY', m, 'v', 1)
redis.call('HINCRBY', m, 'r', #blob / E)
redis.call('HSET', m, 'n', ARGV[3], 'p', ARGV[4], 'pt', ARGV[6])
redis.call('HDEL', m, 'park')
return v
"#;

/// A serving read in one round trip: version, nonce, pending marker, the cached list and the
/// nonce it was stamped with, the newest `tail` history entries, and the recorded count.
/// KEYS: history, meta. ARGV: tail. Absent fields are empty strings.
pub(crate) const READ: &str = r#"
local f = redis.call('HMGET', KEYS[2], 'v', 'n', 'p', 'l', 'ln', 'park', 'r')
local t = redis.call('GETRANGE', KEYS[1], -tonumber(ARGV[1]) * 24, -1)
return {f[1] or '', f[2] or '', f[3] or '', f[4] or '', f[5] or '', f[6] or '', t, f[7] or ''}
"#;

/// The compare-and-swap list write: stores the list only if the history's version and stamp
/// nonce are still those it was computed from; clears the pending marker only if it is still
/// the one the worker was dispatched for. KEYS: meta. ARGV: version, nonce, list, seq.
/// Returns 0 (refused), 1 (written, still pending) or 2 (written, marker cleared).
pub(crate) const WRITE_LIST: &str = r#"
local c = redis.call('HMGET', KEYS[1], 'v', 'n', 'p')
if c[1] ~= ARGV[1] or c[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'l', ARGV[3], 'ln', ARGV[2])
if c[3] == ARGV[4] then
  redis.call('HDEL', KEYS[1], 'p', 'pt', 'park')
  return 2
end
return 1
"#;

/// Parks a user whose refresh failed on every delivery, unless a newer record arrived (its
/// marker changed). KEYS: meta. ARGV: seq. Returns 1 when parked.
pub(crate) const PARK: &str = r#"
if redis.call('HGET', KEYS[1], 'p') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'park', ARGV[1])
  return 1
end
return 0
"#;

/// The sweep's step for one user: returns the pending seq when the marker is older than
/// ARGV[1] (ms) and not parked, and moves its time to ARGV[2] (now) so the next sweep waits
/// again; else an empty string. KEYS: meta.
pub(crate) const RENOTIFY: &str = r#"
local f = redis.call('HMGET', KEYS[1], 'p', 'pt', 'park')
if not f[1] or f[3] then return '' end
if tonumber(f[2] or '0') > tonumber(ARGV[1]) then return '' end
redis.call('HSET', KEYS[1], 'pt', ARGV[2])
return f[1]
"#;

/// Asks for a refresh of a user that has a history (a read found its list outdated by a model
/// or tokenization change, or `Db::refresh` named it): sets the pending marker to ARGV[1]
/// unless one is set, and unparks. KEYS: meta. ARGV: seq, now_ms. Returns the pending seq to
/// notify, or an empty string for a user without a history.
pub(crate) const REQUEST: &str = r#"
if redis.call('HEXISTS', KEYS[1], 'v') == 0 then return '' end
local p = redis.call('HGET', KEYS[1], 'p')
if not p then
  p = ARGV[1]
  redis.call('HSET', KEYS[1], 'p', p, 'pt', ARGV[2])
end
redis.call('HDEL', KEYS[1], 'park')
return p
"#;

/// Interns an interaction kind: its code in the namespace's kind table (1-based, in order of
/// first use), adding it unless the table already holds `ARGV[2]` kinds. KEYS: the table (a
/// hash, name -> code). ARGV: name, max. Returns the code, or 0 when the table is full.
pub(crate) const KIND: &str = r#"
local c = redis.call('HGET', KEYS[1], ARGV[1])
if c then return tonumber(c) end
local n = redis.call('HLEN', KEYS[1])
if n >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], n + 1)
return n + 1
"#;
