package redisstore

import "github.com/redis/rueidis"

// The Lua scripts run every step that must be atomic. Each touches only the
// keys of one user, which share a hash tag and so a Cluster slot: the
// record keys of the user's sessions and the user's index, a sorted set of
// session IDs scored by creation time (see the package doc). The record keys
// of other sessions than KEYS[1] are named from a prefix in ARGV; Redis
// Cluster accepts undeclared keys in the slot of the declared ones.
//
// Records are MessagePack arrays (see record.go), which the scripts decode
// with cmsgpack. Lua indexes from 1, so field f of record.go is r[f+1].
// Numbers are float64 in Lua: numbers passed back to Redis go through i(),
// which prints them as integers, never in exponent form.

// luaHelpers is prepended to every script that needs them.
const luaHelpers = `
local function i(x) return string.format('%.0f', x) end
-- ceilms returns the microsecond time us as a PXAT/PEXPIREAT argument.
local function ceilms(us)
  if us <= 0 then return 1 end
  return math.ceil(us / 1000)
end
-- extend moves the expiry of key to at least ms (never earlier).
local function extend(key, ms)
  local cur = redis.call('PEXPIRETIME', key)
  if cur == -1 or cur < ms then redis.call('PEXPIREAT', key, i(ms)) end
end
-- seen returns the last-seen time of record r (stored as true when it
-- equals the creation time).
local function seen(r)
  if r[5] == true then return r[2] end
  return r[5]
end
`

// createScript inserts a record, enforcing the user's session limit.
//
//	KEYS: record, index
//	ARGV: record, expiry (ms), created (µs), id, max, reject ("1"/"0"),
//	      the user's record key prefix, now (ms)
//
// It returns -2 if the session ID is taken, -1 if the limit rejects the
// session, and otherwise the evicted sessions as {id, record, id, record…},
// oldest first. With a limit, index members whose records Redis has
// expired are removed first, so they never count; without one, three
// members picked at random are checked.
var createScript = rueidis.NewLuaScript(luaHelpers + `
if redis.call('EXISTS', KEYS[1]) == 1 then return -2 end
local max = tonumber(ARGV[5])
local evicted = {}
if max > 0 then
  local live = {}
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if redis.call('EXISTS', ARGV[7] .. id) == 1 then
      live[#live + 1] = id
    else
      redis.call('ZREM', KEYS[2], id)
    end
  end
  local n = #live - max + 1
  if n > 0 then
    if ARGV[6] == '1' then return -1 end
    for j = 1, n do
      local k = ARGV[7] .. live[j]
      evicted[#evicted + 1] = live[j]
      evicted[#evicted + 1] = redis.call('GET', k)
      redis.call('DEL', k)
      redis.call('ZREM', KEYS[2], live[j])
    end
  end
else
  -- No limit, so no full scan: a few members picked at random go if their
  -- records have expired, which keeps expired members to a fraction of
  -- the index however many sessions the user makes.
  for _, id in ipairs(redis.call('ZRANDMEMBER', KEYS[2], 3)) do
    if redis.call('EXISTS', ARGV[7] .. id) == 0 then redis.call('ZREM', KEYS[2], id) end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
if tonumber(ARGV[2]) > tonumber(ARGV[8]) then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
  extend(KEYS[2], tonumber(ARGV[2]))
end
return evicted
`)

// updateScript replaces a record if its version matches (compare-and-swap),
// keeping the stored last-seen time, client and idle deadline where they
// are later than the new record's.
//
//	KEYS: record, index
//	ARGV: expected version, new record, now (µs), id
//
// It returns {0} if the session is gone or expired, {1} if the version
// differs, and {2, old token hash, old previous token hash, new expiry (ms)}
// once replaced.
var updateScript = rueidis.NewLuaScript(luaHelpers + `
local v = redis.call('GET', KEYS[1])
if not v then return {0} end
local c = cmsgpack.unpack(v)
if math.min(c[6], c[7]) <= tonumber(ARGV[3]) then return {0} end
if c[1] ~= tonumber(ARGV[1]) then return {1} end
local n = cmsgpack.unpack(ARGV[2])
if seen(c) > seen(n) then
  n[5] = seen(c)
  local ip, ua = c[14], c[15]
  if ip == false then ip = c[12] end
  if ua == false then ua = c[13] end
  if ip == n[12] then ip = false end
  if ua == n[13] then ua = false end
  n[14], n[15] = ip, ua
end
if c[6] > n[6] then n[6] = c[6] end
local exp = ceilms(math.min(n[6], n[7]))
redis.call('SET', KEYS[1], cmsgpack.pack(n), 'PXAT', i(exp))
redis.call('ZADD', KEYS[2], i(n[2]), ARGV[4])
extend(KEYS[2], exp)
return {2, c[9], c[10], exp}
`)

// touchScript records a use of a session, moving its last-seen time,
// client and idle deadline only forward, without changing its version.
//
//	KEYS: record, index
//	ARGV: at (µs), IP, user agent, idle deadline (µs), now (µs)
//
// It returns nil if the session is gone or expired, and otherwise {token
// hash, previous token hash, expiry (ms)}.
var touchScript = rueidis.NewLuaScript(luaHelpers + `
local v = redis.call('GET', KEYS[1])
if not v then return false end
local r = cmsgpack.unpack(v)
local idle, abs = r[6], r[7]
if math.min(idle, abs) <= tonumber(ARGV[5]) then return false end
local changed = false
local at = tonumber(ARGV[1])
if at > seen(r) then
  r[5] = at
  if ARGV[2] == r[12] then r[14] = false else r[14] = ARGV[2] end
  if ARGV[3] == r[13] then r[15] = false else r[15] = ARGV[3] end
  changed = true
end
local ni = tonumber(ARGV[4])
if ni > idle then
  r[6] = ni
  idle = ni
  changed = true
end
local exp = ceilms(math.min(idle, abs))
if changed then
  redis.call('SET', KEYS[1], cmsgpack.pack(r), 'PXAT', i(exp))
  extend(KEYS[2], exp)
end
return {r[9], r[10], exp}
`)

// deleteScript removes a record and its index entry.
//
//	KEYS: record, index
//	ARGV: id
//
// It returns the removed record, or nil if there was none.
var deleteScript = rueidis.NewLuaScript(`
local v = redis.call('GET', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if not v then return false end
redis.call('DEL', KEYS[1])
return v
`)

// listScript returns a user's records, oldest first, as {id, record, id,
// record…}, and removes index members whose records Redis has expired.
//
//	KEYS: index
//	ARGV: the user's record key prefix
var listScript = rueidis.NewLuaScript(`
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local v = redis.call('GET', ARGV[1] .. id)
  if v then
    out[#out + 1] = id
    out[#out + 1] = v
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
`)

// deleteUserScript removes a user's records except one, and returns the
// removed ones as {id, record, id, record…}.
//
//	KEYS: index
//	ARGV: the user's record key prefix, the ID to keep ("" for none)
var deleteUserScript = rueidis.NewLuaScript(`
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if id ~= ARGV[2] then
    local k = ARGV[1] .. id
    local v = redis.call('GET', k)
    if v then
      redis.call('DEL', k)
      out[#out + 1] = id
      out[#out + 1] = v
    end
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
`)
