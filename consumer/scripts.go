package consumer

import "github.com/redis/go-redis/v9"

// The Lua scripts of the consumer. Each takes the stream key as its only
// key, so on a cluster it runs on the stream's node; each reads and writes
// in one atomic step what two separate commands would leave a window
// between.

// delIdleConsumer deletes a consumer of the group only if, read in the same
// step, it owns no pending entry and has been idle at least the given time:
// a consumer that came back between the caller's XINFO CONSUMERS and the
// delete (restarted under the same name, its new entries pending) is kept,
// since XGROUP DELCONSUMER would drop its pending entries.
//
// KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] minimum idle
// time in ms. Returns 1 when deleted, 0 when kept or absent.
var delIdleConsumer = redis.NewScript(`
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] == ARGV[2] then
    if tonumber(f['pending']) == 0 and tonumber(f['idle']) >= tonumber(ARGV[3]) then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
      return 1
    end
    return 0
  end
end
return 0
`)

// refreshHeld keeps the entries this consumer holds fresh (see freshness):
// each ID still pending for this consumer, and still in the stream, is
// claimed again with JUSTID (idle time reset, delivery count unchanged).
// It never takes back an entry another consumer claimed while this process
// did not refresh it (paused longer than ReclaimIdle: SIGSTOP, GC, a frozen
// VM, Redis unreachable), which a plain XCLAIM would: it returns such IDs
// as taken. It leaves pending an entry deleted from the stream (trimmed)
// and returns it as trimmed: XCLAIM on Redis 7 would drop it from the
// pending list without a word, so that if its handler then does not apply
// it nothing would count it as lost; left pending, it is acknowledged when
// applied, or else counted as lost by the reclaim that finds it deleted.
// IDs no longer pending at all (acknowledged) are skipped.
//
// KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3…] entry IDs.
// Returns {taken IDs, trimmed IDs}.
var refreshHeld = redis.NewScript(`
local taken, trimmed = {}, {}
local claim = {KEYS[1], ARGV[1], ARGV[2], 0}
for i = 3, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if #p == 1 then
    if p[1][2] ~= ARGV[2] then
      taken[#taken + 1] = id
    elseif #redis.call('XRANGE', KEYS[1], id, id) == 0 then
      trimmed[#trimmed + 1] = id
    else
      claim[#claim + 1] = id
    end
  end
end
if #claim > 4 then
  claim[#claim + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(claim))
end
return {taken, trimmed}
`)

// giveBackDeliveries sets the delivery counter of each entry back by one
// (see Consumer.giveBack), with XCLAIM … IDLE (its idle time kept, so it
// is reclaimed when it would have been) RETRYCOUNT (one less) JUSTID (no
// increment). Only an entry still pending for this consumer, with the
// delivery count the caller saw, is changed: one claimed or delivered
// again meanwhile is another delivery's. An entry deleted from the stream
// is skipped: XCLAIM on Redis 7 would drop it from the pending list
// without a word (see refreshHeld).
//
// KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, then pairs of entry ID
// and the delivery count seen. Returns how many entries it changed.
var giveBackDeliveries = redis.NewScript(`
local n = 0
for i = 3, #ARGV, 2 do
  local id, seen = ARGV[i], tonumber(ARGV[i + 1])
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if #p == 1 and p[1][2] == ARGV[2] and p[1][4] == seen and seen >= 1
    and #redis.call('XRANGE', KEYS[1], id, id) == 1 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'IDLE', p[1][3], 'RETRYCOUNT', seen - 1, 'JUSTID')
    n = n + 1
  end
end
return n
`)
