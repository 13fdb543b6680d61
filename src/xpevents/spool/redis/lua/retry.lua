-- retry: move the records from the stream to the retry schedule.
-- ARGV: group, attempts, first_attempt_at, next_attempt_at, ids...
local group = ARGV[1]
local n = 0
for i = 5, #ARGV do
  local found = redis.call('XRANGE', S, ARGV[i], ARGV[i])
  if #found > 0 then
    local f = found[1][2]
    local id = found[1][1]
    local t = field(f, 't') or '0'
    redis.call('HSET', RDATA, id,
      cmsgpack.pack({field(f, 'e'), field(f, 'v'), t, ARGV[2], ARGV[3]}))
    redis.call('ZADD', RZ, ARGV[4], id)
    redis.call('ZADD', RAGE, t, id)
    redis.call('XACK', S, group, id)
    redis.call('XDEL', S, id)
    n = n + 1
  end
end
return n
