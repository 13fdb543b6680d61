-- ack: XACK + XDEL the delivered records; returns reading().
-- ARGV: group, ids...
local entries = {}
for i = 2, #ARGV do
  local found = redis.call('XRANGE', S, ARGV[i], ARGV[i])
  if #found > 0 then entries[#entries + 1] = found[1]
  else redis.call('XACK', S, ARGV[1], ARGV[i]) end
end
drop_entries(ARGV[1], entries)
return reading()
