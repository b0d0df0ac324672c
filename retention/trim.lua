-- KEYS[1]: the stream. ARGV[1]: the policy's age bound, an ID or "+" for
-- none. ARGV[2]: the policy's minimum count.
-- Trims with XTRIM MINID to the oldest entry any group still needs (its
-- oldest pending entry, or the entry after its last delivered one), or to
-- what the policy keeps, whichever is older. Returns {trimmed, minid,
-- held_by, length}; {0, "", "", 0} when the stream does not exist.
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then
  return {0, '', '', 0}
end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
-- after returns the ID right after id (its millisecond part kept as text:
-- Lua would print a large number in exponent form).
local function after(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms .. '-' .. string.format('%d', tonumber(seq) + 1)
end
-- less reports whether ID a is before ID b ("+" is after every ID).
local function less(a, b)
  if b == '+' then return a ~= '+' end
  if a == '+' then return false end
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am ~= bm then return am < bm end
  return as < bs
end

local minid, held = ARGV[1], ''
local groups = redis.call('XINFO', 'GROUPS', key)
if #groups == 0 then
  -- No group has read anything: every entry is unread. Keep them all.
  return {0, '0-0', '', redis.call('XLEN', key)}
end
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local need
  if tonumber(f['pending']) > 0 then
    need = redis.call('XPENDING', key, f['name'], '-', '+', 1)[1][1]
  else
    need = after(f['last-delivered-id'])
  end
  if less(need, minid) then
    minid, held = need, f['name']
  end
end

local keep = tonumber(ARGV[2])
if keep > 0 then
  local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', keep)
  local id = '0-0'
  if #newest == keep then id = newest[#newest][1] end
  if less(id, minid) then
    minid, held = id, ''
  end
end

if minid == '+' then
  -- Nothing keeps anything: trim to the entry after the last one.
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if #last == 0 then
    return {0, '0-0', '', 0}
  end
  minid = after(last[1][1])
end
local n = redis.call('XTRIM', key, 'MINID', minid)
return {n, minid, held, redis.call('XLEN', key)}
