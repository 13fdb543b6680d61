-- append: XADD each visitor; intern the envelopes; enforce the bounds.
-- ARGV: group, max_events, max_bytes, cutoff, now, n_envelopes, digest, body, ...,
--       then digest, visitor pairs.
local group = ARGV[1]
local now = ARGV[5]
local nenv = tonumber(ARGV[6])
local i = 7
for _ = 1, nenv do
  redis.call('HSETNX', ENV, ARGV[i], ARGV[i + 1])
  i = i + 2
end
local total = 0
while i < #ARGV do
  redis.call('XADD', S, '*', 'e', ARGV[i], 'v', ARGV[i + 1], 't', now, 'a', '0', 'f', '')
  total = total + #ARGV[i + 1]
  i = i + 2
end
redis.call('HINCRBY', META, 'bytes', total)
enforce(group, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
return reading()
