-- Shared by every script of the Redis spool (scripts.py puts it in front of each).
-- KEYS, the same for every script:
-- 1 stream, 2 envelopes, 3 meta, 4 retry zset, 5 retry:age zset, 6 retry:data hash, 7 dead.
local S, ENV, META, RZ, RAGE, RDATA, DEAD =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]

-- Every script bumps the spool's sequence number, so two readings of the spool's
-- state (see reading() and schema.read_stats) are ordered as Redis ran them.
local SEQ = redis.call('HINCRBY', META, 'seq', 1)

local function field(fields, name)
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1] end
  end
  return nil
end

local function count_evicted(reason, n)
  if n > 0 then redis.call('HINCRBY', META, 'evicted:' .. reason, n) end
  return n
end

-- Remove stream entries (by id), return freed bytes.
local function drop_entries(group, entries)
  local freed = 0
  for _, entry in ipairs(entries) do
    local v = field(entry[2], 'v')
    if v then freed = freed + #v end
    redis.call('XACK', S, group, entry[1])
    redis.call('XDEL', S, entry[1])
  end
  if freed > 0 then redis.call('HINCRBY', META, 'bytes', -freed) end
  return freed
end

-- Remove scheduled retries (by member id), return freed bytes.
local function drop_scheduled(ids)
  local freed = 0
  for _, id in ipairs(ids) do
    local packed = redis.call('HGET', RDATA, id)
    if packed then freed = freed + #cmsgpack.unpack(packed)[2] end
    redis.call('ZREM', RZ, id)
    redis.call('ZREM', RAGE, id)
    redis.call('HDEL', RDATA, id)
  end
  if freed > 0 then redis.call('HINCRBY', META, 'bytes', -freed) end
  return freed
end

-- Put scheduled retries (by member id) back at the end of the stream.
local function requeue(ids)
  for _, id in ipairs(ids) do
    local packed = redis.call('HGET', RDATA, id)
    if packed then
      local r = cmsgpack.unpack(packed)
      redis.call('XADD', S, '*', 'e', r[1], 'v', r[2], 't', r[3], 'a', r[4], 'f', r[5])
    end
    redis.call('ZREM', RZ, id)
    redis.call('ZREM', RAGE, id)
    redis.call('HDEL', RDATA, id)
  end
end

local function depth()
  return redis.call('XLEN', S) + redis.call('ZCARD', RZ)
end

-- What the caller's ResetWatch needs: the epoch (whether the data it saw before is
-- still here), this script's sequence number and the depth after it.
local function reading()
  return {redis.call('HGET', META, 'epoch') or '', SEQ, depth()}
end

-- Evict the oldest records (stream head first, then the schedule) until both bounds
-- hold; then, when cutoff >= 0, records enqueued before cutoff. Returns nothing.
local function enforce(group, max_events, max_bytes, cutoff)
  local evicted = 0
  local guard = 0
  while guard < 1000 do
    guard = guard + 1
    local d = depth()
    local b = tonumber(redis.call('HGET', META, 'bytes') or '0')
    if d <= max_events and b <= max_bytes then break end
    local reason = 'max_spool_bytes'
    local n = 1000
    if d > max_events then
      reason = 'max_spool_events'
      n = math.min(d - max_events, 1000)
    end
    local entries = redis.call('XRANGE', S, '-', '+', 'COUNT', n)
    if #entries > 0 then
      if reason == 'max_spool_bytes' then
        local over = b - max_bytes
        local take = {}
        local freed = 0
        for _, entry in ipairs(entries) do
          if freed >= over then break end
          freed = freed + #(field(entry[2], 'v') or '')
          take[#take + 1] = entry
        end
        entries = take
      end
      drop_entries(group, entries)
      count_evicted(reason, #entries)
    else
      local ids = redis.call('ZRANGE', RAGE, 0, n - 1)
      if #ids == 0 then break end
      drop_scheduled(ids)
      count_evicted(reason, #ids)
    end
  end
  if cutoff >= 0 then
    local entries = redis.call('XRANGE', S, '-', '+', 'COUNT', 1000)
    local old = {}
    for _, entry in ipairs(entries) do
      local t = tonumber(field(entry[2], 't') or '0')
      if t < cutoff then old[#old + 1] = entry else break end
    end
    drop_entries(group, old)
    count_evicted('max_event_age', #old)
    local ids = redis.call('ZRANGEBYSCORE', RAGE, '-inf', '(' .. cutoff, 'LIMIT', 0, 1000)
    drop_scheduled(ids)
    count_evicted('max_event_age', #ids)
  end
end
