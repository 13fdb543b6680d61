-- make_due: move up to 1000 scheduled retries into the stream now.
-- ARGV: (none).
local ids = redis.call('ZRANGE', RZ, 0, 999)
requeue(ids)
return #ids
