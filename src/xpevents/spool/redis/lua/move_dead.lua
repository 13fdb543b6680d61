-- move_dead: replay (back to the stream) or purge one chunk of dead letters.
-- ARGV: group, reason ('' = all), now, start id, chunk, mode ('replay' | 'purge'),
--       max_events, max_bytes. Returns {moved, next start id or ''}.
local group, reason, now, start = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local chunk = tonumber(ARGV[5])
local entries = redis.call('XRANGE', DEAD, start, '+', 'COUNT', chunk)
local moved = 0
local total = 0
for _, entry in ipairs(entries) do
  local f = entry[2]
  local r = field(f, 'r') or ''
  if reason == '' or r == reason then
    if ARGV[6] == 'replay' then
      local v = field(f, 'v')
      redis.call('XADD', S, '*', 'e', field(f, 'e'), 'v', v, 't', now, 'a', '0', 'f', '')
      total = total + #v
    end
    redis.call('XDEL', DEAD, entry[1])
    redis.call('HINCRBY', META, 'dead:' .. r, -1)
    moved = moved + 1
  end
end
if total > 0 then
  redis.call('HINCRBY', META, 'bytes', total)
  enforce(group, tonumber(ARGV[7]), tonumber(ARGV[8]), -1)
end
local nxt = ''
if #entries == chunk then nxt = '(' .. entries[#entries][1] end
return {moved, nxt}
