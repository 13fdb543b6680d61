-- dead_letter: move the records to the dead-letter stream; trim it to max_dead.
-- ARGV: group, reason, now, max_dead, attempts made ('' keeps each record's count), ids...
local group, reason, now = ARGV[1], ARGV[2], ARGV[3]
local max_dead = tonumber(ARGV[4])
local made = ARGV[5]
local entries = {}
for i = 6, #ARGV do
  local found = redis.call('XRANGE', S, ARGV[i], ARGV[i])
  if #found > 0 then
    local f = found[1][2]
    local attempts = made
    if attempts == '' then attempts = field(f, 'a') end
    redis.call('XADD', DEAD, '*', 'e', field(f, 'e'), 'v', field(f, 'v'), 't', field(f, 't'),
      'a', attempts, 'f', field(f, 'f'), 'r', reason, 'x', now)
    entries[#entries + 1] = found[1]
  end
end
drop_entries(group, entries)
if #entries > 0 then redis.call('HINCRBY', META, 'dead:' .. reason, #entries) end
local over = redis.call('XLEN', DEAD) - max_dead
while over > 0 do
  local old = redis.call('XRANGE', DEAD, '-', '+', 'COUNT', math.min(over, 1000))
  if #old == 0 then break end
  for _, entry in ipairs(old) do
    redis.call('HINCRBY', META, 'dead:' .. (field(entry[2], 'r') or ''), -1)
    redis.call('XDEL', DEAD, entry[1])
  end
  count_evicted('max_dead_letters', #old)
  over = over - #old
end
return reading()
