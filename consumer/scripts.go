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
