package redisstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"

	"github.com/redis/rueidis"
)

// The Lua scripts run every step that must be atomic. Each touches only the
// keys of one namespace (see "Keys" in docs/stores/redis.md), which share a
// hash tag and so a Cluster slot: its index and its record keys. The record
// keys of other slots than those in KEYS are named from the namespace's key
// prefix in ARGV; Redis Cluster accepts undeclared keys in the slot of the
// declared ones.
//
// A namespace may hold the sessions of more than one user (if their user
// IDs' hashes collide), so the scripts check the user ID in each record
// they act on, and the session ID in the record a pointer led to.
//
// Records are decoded by parse and encoded by build, which mirror
// record.go. Times are Lua numbers of microseconds from recordEpoch, or
// false for the zero time; the callers pass the zero time as luaZero.
// Numbers passed back to Redis go through i(), which prints them as
// integers, never in exponent form.

// A script is a Lua script that runs through rueidis (Exec: EVALSHA, then
// EVAL if Redis does not have it), or on a connection of the Store's own
// with a command after it in the same round trip (execThen).
type script struct {
	*rueidis.Lua
	src, sha1 string
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{Lua: rueidis.NewLuaScript(src), src: src, sha1: hex.EncodeToString(sum[:])}
}

// execThen runs the script on c, and then, if then is not nil, the command
// then builds, pipelined behind it on the same connection. It returns both
// replies (the second is the zero RedisResult without then).
func (s *script) execThen(ctx context.Context, c rueidis.CommandClient, keys, args []string, then func(rueidis.Builder) rueidis.Completed) (res, next rueidis.RedisResult) {
	run := func(eval func(b rueidis.Builder) rueidis.Completed) {
		b := c.B()
		if then == nil {
			res = c.Do(ctx, eval(b))
			return
		}
		r := c.DoMulti(ctx, eval(b), then(b))
		res, next = r[0], r[1]
	}
	n := int64(len(keys))
	run(func(b rueidis.Builder) rueidis.Completed {
		return b.Evalsha().Sha1(s.sha1).Numkeys(n).Key(keys...).Arg(args...).Build()
	})
	if err, ok := rueidis.IsRedisErr(res.Error()); ok && err.IsNoScript() {
		run(func(b rueidis.Builder) rueidis.Completed {
			return b.Eval().Script(s.src).Numkeys(n).Key(keys...).Arg(args...).Build()
		})
	}
	return res, next
}

// luaHelpers is prepended to every script.
const luaHelpers = `
local ZERO = -9007199254740992
local EPOCH_MS = 1767225600000
local function i(x) return string.format('%.0f', x) end
local function num(t) return t or ZERO end
local function argtime(s)
  local t = tonumber(s)
  if t == ZERO then return false end
  return t
end
-- uvar reads the uvarint at p of s and returns it and the position after it.
local function uvar(s, p)
  local x, m = 0, 1
  while true do
    local c = string.byte(s, p)
    if c == nil then error('truncated record') end
    p = p + 1
    if c < 128 then return x + c * m, p end
    x = x + (c - 128) * m
    m = m * 128
  end
end
local function wvar(x)
  local t = {}
  while x >= 128 do
    t[#t + 1] = string.char(x % 128 + 128)
    x = (x - x % 128) / 128
  end
  t[#t + 1] = string.char(x)
  return table.concat(t)
end
-- rtime reads the time at p from base (see appendTime in record.go).
local function rtime(s, p, base)
  local c = string.byte(s, p)
  if c == nil then error('truncated record') end
  p = p + 1
  if c == 0 then return false, p end
  local m = math.floor(c / 8) % 16
  if c >= 128 then
    local hi
    hi, p = uvar(s, p)
    m = m + hi * 16
  end
  if math.floor(c / 2) % 2 == 1 then m = m * 1000000 end
  if math.floor(c / 4) % 2 == 1 then m = -m end
  return (base or 0) + m, p
end
local function wtime(t, base)
  if not t then return '\0' end
  local d = t - (base or 0)
  local c = 1
  if d < 0 then c, d = c + 4, -d end
  if d % 1000000 == 0 then c, d = c + 2, d / 1000000 end
  c = c + (d % 16) * 8
  d = (d - d % 16) / 16
  if d == 0 then return string.char(c) end
  return string.char(c + 128) .. wvar(d)
end
local function addrend(s, p)
  local n
  n, p = uvar(s, p)
  if n == 1 then return p + 4 end
  if n == 3 then return p + 16 end
  if n % 2 == 1 then error('bad address') end
  return p + n / 2
end
-- parse decodes a record into a table: uid and id (as stored), ver (the
-- version's bytes), the times created, seen, idle and abs, tok and prev
-- (previous token hash, '' if none), cip and lip (created and last IP as
-- stored), cua and lua (created and last user agent), and the parts that
-- build copies: f (flags), head, mid and tail.
local function parse(s)
  local r = {}
  local _
  local f = string.byte(s, 1)
  if f == nil then error('empty record') end
  r.f = f
  local n, q
  local p = 2
  n, p = uvar(s, p)
  r.uid = string.sub(s, p, p + n - 1)
  p = p + n
  q = p
  n, p = uvar(s, p)
  p = p + math.floor(n / 2)
  r.id = string.sub(s, q, p - 1)
  q = p
  _, p = uvar(s, p)
  r.ver = string.sub(s, q, p - 1)
  r.created, p = rtime(s, p, 0)
  if bit.band(f, 4) == 0 then _, p = rtime(s, p, r.created) end
  if bit.band(f, 8) == 0 then _, p = rtime(s, p, r.created) end
  r.head = string.sub(s, 2, p - 1)
  r.seen = r.created
  if bit.band(f, 16) == 0 then r.seen, p = rtime(s, p, r.created) end
  r.idle, p = rtime(s, p, r.seen)
  q = p
  r.abs, p = rtime(s, p, r.created)
  r.tok = string.sub(s, p, p + 31)
  p = p + 32
  r.prev = ''
  if bit.band(f, 2) ~= 0 then
    r.prev = string.sub(s, p, p + 31)
    p = p + 32
  end
  n, p = uvar(s, p)
  for _ = 1, n do
    local l
    l, p = uvar(s, p)
    p = p + l
  end
  local c = p
  p = addrend(s, p)
  r.cip = string.sub(s, c, p - 1)
  r.mid = string.sub(s, q, p - 1)
  r.lip = r.cip
  if bit.band(f, 32) == 0 then
    c = p
    p = addrend(s, p)
    r.lip = string.sub(s, c, p - 1)
  end
  if bit.band(f, 64) == 0 then
    n, p = uvar(s, p)
    r.lua = string.sub(s, p, p + n - 1)
    p = p + n
  end
  r.tail = string.sub(s, p)
  n, p = uvar(s, p)
  r.cua = string.sub(s, p, p + n - 1)
  p = p + n
  if bit.band(f, 64) ~= 0 then r.lua = r.cua end
  if bit.band(f, 128) ~= 0 then
    n, p = uvar(s, p)
    p = p + n
  end
  if p <= #s then
    n, p = uvar(s, p)
    for _ = 1, n do
      local l
      l, p = uvar(s, p)
      p = p + l
    end
  end
  if p ~= #s + 1 then error('bad record length') end
  return r
end
-- build encodes a record parse returned, after changes to seen, idle, lip
-- and lua.
local function build(r)
  local f = bit.band(r.f, 1 + 2 + 4 + 8 + 128)
  local seen, lip, lua = '', '', ''
  if r.seen == r.created then f = f + 16 else seen = wtime(r.seen, r.created) end
  if r.lip == r.cip then f = f + 32 else lip = r.lip end
  if r.lua == r.cua then f = f + 64 else lua = wvar(#r.lua) .. r.lua end
  return string.char(f) .. r.head .. seen .. wtime(r.idle, r.seen) .. r.mid .. lip .. lua .. r.tail
end
local function ends(r) return math.min(num(r.idle), num(r.abs)) end
local function expired(r, now) return ends(r) <= now end
-- expms returns when the keys of r expire, as a PXAT argument.
local function expms(r)
  local e = ends(r)
  if e == ZERO then return 1 end
  local rem = e % 1000
  local ms = EPOCH_MS + (e - rem) / 1000
  if rem > 0 then ms = ms + 1 end
  if ms < 1 then return 1 end
  return ms
end
-- extend moves the expiry of key to at least ms (never earlier).
local function extend(key, ms)
  local cur = redis.call('PEXPIRETIME', key)
  if cur == -1 or cur < ms then redis.call('PEXPIREAT', key, i(ms)) end
end
local D36 = '0123456789abcdefghijklmnopqrstuvwxyz'
-- b36 returns the key suffix of slot n (strconv.FormatInt(n, 36)).
local function b36(n)
  local s = ''
  repeat
    local d = n % 36
    s = string.sub(D36, d + 1, d + 1) .. s
    n = (n - d) / 36
  until n == 0
  return s
end
-- marked returns the slots the index bitmap bits marks, in order.
local function marked(bits)
  local out = {}
  for k = 1, #bits do
    local b = string.byte(bits, k)
    if b ~= 0 then
      for j = 0, 7 do
        if bit.band(b, bit.rshift(128, j)) ~= 0 then out[#out + 1] = (k - 1) * 8 + j end
      end
    end
  end
  return out
end
-- firstfree returns the lowest slot above 0 that bits does not mark.
local function firstfree(bits)
  for k = 1, #bits do
    local b = string.byte(bits, k)
    if k == 1 then b = bit.bor(b, 128) end
    if b ~= 255 then
      for j = 0, 7 do
        if bit.band(b, bit.rshift(128, j)) == 0 then return (k - 1) * 8 + j end
      end
    end
  end
  return math.max(#bits * 8, 1)
end
-- unmark clears the bit of slot s > 0 in the index, and deletes the index
-- once no bit is left.
local function unmark(index, s)
  if s == 0 then return end
  redis.call('SETBIT', index, s, 0)
  if redis.call('BITCOUNT', index) == 0 then redis.call('DEL', index) end
end
-- each calls fn(slot, key) for slot 0 and each slot the index marks.
local function each(index, prefix, fn)
  fn(0, prefix .. '0')
  for _, s in ipairs(marked(redis.call('GET', index) or '')) do fn(s, prefix .. b36(s)) end
end
`

// createScript inserts a record, enforcing the user's session limit.
//
//	KEYS: index
//	ARGV: key prefix of the namespace's records, record, user ID, max,
//	      reject ("1"/"0"), now (µs from recordEpoch), now (ms), expiry
//	      (ms), a random number
//
// It returns {-1} if the limit rejects the session, {-2} if the session has
// already expired (nothing is stored), and otherwise {slot, evicted
// record, evicted record…}, the evicted sessions oldest first. Slots
// whose records Redis has removed are unmarked on the way. With a limit,
// every slot of the namespace is checked; without one, slot 0 and three
// marked slots from a random place, which keeps stale marks to a fraction
// of the index however many sessions the user makes.
var createScript = newScript(luaHelpers + `
local index, prefix, uid = KEYS[1], ARGV[1], ARGV[3]
local max, now, exp = tonumber(ARGV[4]), tonumber(ARGV[6]), tonumber(ARGV[8])
if exp <= tonumber(ARGV[7]) then return {-2} end
local taken0 = true
-- look returns the live, readable record at slot s (with its slot, value
-- and key), false for a record that is not (unreadable, or expired but
-- not yet removed by Redis: it keeps its slot, but does not count), and
-- nil for a free slot, which it unmarks.
local function look(s, k)
  local v = redis.call('GET', k)
  if not v then
    if s == 0 then taken0 = false end
    unmark(index, s)
    return nil
  end
  local ok, r = pcall(parse, v)
  if not ok or expired(r, now) then return false end
  r.slot, r.v, r.key = s, v, k
  return r
end
local mine = {}
local evicted = {}
if max > 0 then
  each(index, prefix, function(s, k)
    local r = look(s, k)
    if r and r.uid == uid then mine[#mine + 1] = r end
  end)
  local n = #mine - max + 1
  if n > 0 then
    if ARGV[5] == '1' then return {-1} end
    table.sort(mine, function(a, b)
      if a.created ~= b.created then return num(a.created) < num(b.created) end
      return a.id < b.id
    end)
    for j = 1, n do
      local r = mine[j]
      redis.call('DEL', r.key)
      if r.slot == 0 then taken0 = false end
      unmark(index, r.slot)
      evicted[#evicted + 1] = r.v
    end
  end
else
  look(0, prefix .. '0')
  local m = marked(redis.call('GET', index) or '')
  if #m > 0 then
    local start = tonumber(ARGV[9]) % #m
    for j = 0, math.min(2, #m - 1) do
      local s = m[(start + j) % #m + 1]
      look(s, prefix .. b36(s))
    end
  end
end
local slot = 0
if taken0 then slot = firstfree(redis.call('GET', index) or '') end
redis.call('SET', prefix .. b36(slot), ARGV[2], 'PXAT', ARGV[8])
if slot > 0 then
  redis.call('SETBIT', index, slot, 1)
  extend(index, exp)
end
table.insert(evicted, 1, slot)
return evicted
`)

// findScript finds the slot of a session whose ID pointer does not name
// it (a Create that has not finished, or did not).
//
//	KEYS: index
//	ARGV: key prefix of the namespace's records, session ID (as stored)
//
// It returns the slot, or -1.
var findScript = newScript(luaHelpers + `
local found = -1
each(KEYS[1], ARGV[1], function(s, k)
  local v = redis.call('GET', k)
  if found < 0 and v then
    local ok, r = pcall(parse, v)
    if ok and r.id == ARGV[2] then found = s end
  end
end)
return found
`)

// updateScript replaces a record if its version matches (compare-and-swap),
// keeping the stored last-seen time, client and idle deadline where they
// are later than the new record's.
//
//	KEYS: record, index
//	ARGV: expected version (as stored), new record, now (µs), session
//	      ID (as stored), user ID, slot
//
// It returns {0} if the session is gone or expired, {1} if the version
// differs, {3} if the session belongs to another user, {4} if the record
// cannot be read, and {2, old token hash, old previous token hash, new
// expiry (ms)} once replaced.
var updateScript = newScript(luaHelpers + `
local v = redis.call('GET', KEYS[1])
if not v then return {0} end
local ok, c = pcall(parse, v)
if not ok then return {4} end
if c.id ~= ARGV[4] then return {0} end
if c.uid ~= ARGV[5] then return {3} end
if expired(c, tonumber(ARGV[3])) then return {0} end
if c.ver ~= ARGV[1] then return {1} end
local n = parse(ARGV[2])
if num(c.seen) > num(n.seen) then n.seen, n.lip, n.lua = c.seen, c.lip, c.lua end
if num(c.idle) > num(n.idle) then n.idle = c.idle end
local exp = expms(n)
redis.call('SET', KEYS[1], build(n), 'PXAT', i(exp))
if ARGV[6] ~= '0' then extend(KEYS[2], exp) end
return {2, c.tok, c.prev, exp}
`)

// touchScript records a use of a session, moving its last-seen time,
// client and idle deadline only forward, without changing its version.
//
//	KEYS: record, index
//	ARGV: session ID (as stored), at (µs), IP (as stored), user agent,
//	      idle deadline (µs), now (µs), slot
//
// It returns nil if the session is gone or expired, -1 if its record
// cannot be read, and otherwise {token hash, previous token hash, expiry
// (ms)}.
var touchScript = newScript(luaHelpers + `
local v = redis.call('GET', KEYS[1])
if not v then return false end
local ok, r = pcall(parse, v)
if not ok then return -1 end
if r.id ~= ARGV[1] or expired(r, tonumber(ARGV[6])) then return false end
local changed = false
local at = argtime(ARGV[2])
if num(at) > num(r.seen) then
  r.seen, r.lip, r.lua = at, ARGV[3], ARGV[4]
  changed = true
end
local ni = argtime(ARGV[5])
if num(ni) > num(r.idle) then
  r.idle = ni
  changed = true
end
local exp = expms(r)
if changed then
  redis.call('SET', KEYS[1], build(r), 'PXAT', i(exp))
  if ARGV[7] ~= '0' then extend(KEYS[2], exp) end
end
return {r.tok, r.prev, exp}
`)

// deleteScript removes a record and its slot's mark.
//
//	KEYS: record, index
//	ARGV: session ID (as stored), slot
//
// It returns the removed record, or nil if the session was not there. A
// record that cannot be read is removed too: the pointer that led to it
// is the session's.
var deleteScript = newScript(luaHelpers + `
local v = redis.call('GET', KEYS[1])
local s = tonumber(ARGV[2])
if not v then
  unmark(KEYS[2], s)
  return false
end
local ok, r = pcall(parse, v)
if ok and r.id ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
unmark(KEYS[2], s)
return v
`)

// listScript returns the live records of a user, and unmarks the slots of
// records Redis has removed.
//
//	KEYS: index
//	ARGV: key prefix of the namespace's records, user ID, now (µs)
//
// A record it cannot read is returned as it is, for the caller to report.
var listScript = newScript(luaHelpers + `
local out = {}
local now = tonumber(ARGV[3])
each(KEYS[1], ARGV[1], function(s, k)
  local v = redis.call('GET', k)
  if not v then
    unmark(KEYS[1], s)
    return
  end
  local ok, r = pcall(parse, v)
  if not ok or (r.uid == ARGV[2] and not expired(r, now)) then out[#out + 1] = v end
end)
return out
`)

// deleteUserScript removes a user's records except one, and returns the
// removed live ones.
//
//	KEYS: index
//	ARGV: key prefix of the namespace's records, user ID, the session ID
//	      to keep (as stored; "" for none), now (µs)
//
// Records it cannot read go too, unreported.
var deleteUserScript = newScript(luaHelpers + `
local out = {}
local now = tonumber(ARGV[4])
each(KEYS[1], ARGV[1], function(s, k)
  local v = redis.call('GET', k)
  if v then
    local ok, r = pcall(parse, v)
    if ok and (r.uid ~= ARGV[2] or r.id == ARGV[3]) then return end
    redis.call('DEL', k)
    if ok and not expired(r, now) then out[#out + 1] = v end
  end
  unmark(KEYS[1], s)
end)
return out
`)

// followScript reads a token pointer and the record it leads to, in one
// round trip, for a lookup whose pointer is not cached. The record key is
// not declared, so it runs on one server only, never on Cluster, where
// the record is in another slot than the pointer.
//
//	KEYS: token pointer
//	ARGV: key prefix
//
// It returns nil if there is no pointer; {pointer} if its value does not
// name a record; else {pointer, record key, record or nil}. The record
// key is built as nsKey builds it (12 hex digits of the namespace, the
// slot in base 36); the caller checks that it is the one it expects. A
// value of the form NS<<14|SLOT may not fit the 53 bits of a Lua number,
// so it is divided by 16384 digit by digit; NS fits.
var followScript = newScript(`#!lua flags=no-writes
local p = redis.call('GET', KEYS[1])
if not p then return nil end
local ns, slot
local a, b = string.match(p, '^(%d+):(%d+)$')
if a then
  slot, ns = tonumber(a), tonumber(b)
elseif string.match(p, '^%d+$') and #p <= 19 then
  local q, r = 0, 0
  for i = 1, #p do
    r = r * 10 + string.byte(p, i) - 48
    q = q * 10 + math.floor(r / 16384)
    r = r % 16384
  end
  ns, slot = q, r
else
  return {p}
end
if ns >= 281474976710656 or slot >= 9007199254740992 then return {p} end
local digits, s = '0123456789abcdefghijklmnopqrstuvwxyz', ''
repeat
  local d = slot % 36
  s = string.sub(digits, d + 1, d + 1) .. s
  slot = math.floor(slot / 36)
until slot == 0
local rk = ARGV[1] .. '{' .. string.format('%012x', ns) .. '}' .. s
return {p, rk, redis.call('GET', rk)}
`)
