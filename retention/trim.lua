-- KEYS[1]: the stream. ARGV[1]: the policy's age bound, an ID or "+" for
-- none. ARGV[2]: the policy's minimum count. ARGV[3]: "1" to trim a
-- stream without groups by the policy alone (a dead-letter stream), else
-- it keeps everything. ARGV[4]: the maximum age as an ID, or "" for none,
-- and ARGV[5] the maximum length, 0 for none: when given, entries past
-- them go even if a group still needs them (the operator's opt-in).
-- Trims with XTRIM MINID to the oldest entry any group still needs (its
-- oldest pending entry, or the entry after its last delivered one), or to
-- what the policy keeps, whichever is older; then past the maximums when
-- given. Returns {trimmed, minid, held_by, length, first_id, held_pending,
-- held_lag, trimmed_unread}; held_lag is -1 when Redis does not know it;
-- first_id is "" for an empty stream; {0, "", "", 0, "", 0, 0, 0} when
-- the stream does not exist.
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then
  return {0, '', '', 0, '', 0, 0, 0}
end

-- split returns an ID's millisecond and sequence parts as text; an ID
-- without a sequence ("0", as some servers report an unset position) has
-- sequence 0.
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms then
    ms, seq = string.match(id, '^(%d+)$'), '0'
  end
  return ms or '0', seq
end
local function parse(id)
  local ms, seq = split(id)
  return tonumber(ms), tonumber(seq)
end
-- after returns the ID right after id (its millisecond part kept as text:
-- Lua would print a large number in exponent form).
local function after(id)
  local ms, seq = split(id)
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
-- done returns the reply once the stream is trimmed.
local function done(trimmed, minid, held, pending, lag, unread)
  local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
  local id = ''
  if #first > 0 then id = first[1][1] end
  return {trimmed, minid, held, redis.call('XLEN', key), id, pending, lag, unread}
end

local minid, held, pending, lag = ARGV[1], '', 0, 0
local groups = redis.call('XINFO', 'GROUPS', key)
if #groups == 0 and ARGV[3] ~= '1' then
  -- No group has read anything: every entry is unread. Keep them all.
  return done(0, '0-0', '', 0, 0, 0)
end
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  -- The entry after the last delivered one, or the oldest pending entry
  -- when older (a group moved back with XGROUP SETID needs both).
  local need = after(f['last-delivered-id'])
  if tonumber(f['pending']) > 0 then
    local oldest = redis.call('XPENDING', key, f['name'], '-', '+', 1)[1][1]
    if less(oldest, need) then need = oldest end
  end
  if less(need, minid) then
    minid, held, pending, lag = need, f['name'], tonumber(f['pending']), -1
    if f['lag'] then lag = tonumber(f['lag']) end
  end
end

local keep = tonumber(ARGV[2])
if keep > 0 and redis.call('XLEN', key) <= keep then
  -- The policy keeps every entry.
  minid, held, pending, lag = '0-0', '', 0, 0
elseif keep > 0 then
  local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', keep)
  local id = '0-0'
  if #newest == keep then id = newest[#newest][1] end
  if less(id, minid) then
    minid, held, pending, lag = id, '', 0, 0
  end
end

if minid == '+' then
  -- Nothing keeps anything: trim to the entry after the last one.
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if #last == 0 then
    return done(0, '0-0', '', 0, 0, 0)
  end
  minid = after(last[1][1])
end
local n = redis.call('XTRIM', key, 'MINID', minid)

-- Past the maximums, what a group still needs goes too, when asked.
local unread = 0
if ARGV[4] ~= '' then
  unread = unread + redis.call('XTRIM', key, 'MINID', ARGV[4])
end
local maxlen = tonumber(ARGV[5])
if maxlen > 0 then
  unread = unread + redis.call('XTRIM', key, 'MAXLEN', maxlen)
end
return done(n, minid, held, pending, lag, unread)
