-- claim: lease up to max_records records of one envelope.
-- ARGV: group, consumer, now, lease_ms, max_records, max_bytes
local group, consumer = ARGV[1], ARGV[2]
local now = tonumber(ARGV[3])
local lease_ms = tonumber(ARGV[4])
local max_records = tonumber(ARGV[5])
local max_bytes = tonumber(ARGV[6])
-- 1. due retries go back into the stream
requeue(redis.call('ZRANGEBYSCORE', RZ, '-inf', ARGV[3], 'LIMIT', 0, 1000))
-- 2. candidates: expired leases, then new entries, read in chunks until one envelope's
-- byte cap is reached: under a backlog max_records (the queue's bound) is several times
-- what max_bytes lets one batch carry, and every entry read past it would be handed back
-- (XCLAIM below) and read again by the next claim
local CHUNK = 256
local candidates = {}
local digest = nil
local wanted = 0
local function add(entry)
  local f = entry[2]
  candidates[#candidates + 1] = entry
  local e = field(f, 'e')
  if digest == nil then digest = e end
  if e == digest then wanted = wanted + #(field(f, 'v') or '') end
end
local function enough()
  return #candidates >= max_records or (#candidates > 0 and wanted >= max_bytes)
end
local cursor = '0-0'
repeat
  local reclaimed = redis.call('XAUTOCLAIM', S, group, consumer, lease_ms, cursor,
    'COUNT', math.min(CHUNK, max_records - #candidates))
  for _, entry in ipairs(reclaimed[2]) do
    if entry[2] then add(entry) end
  end
  cursor = reclaimed[1]
until cursor == '0-0' or enough()
while not enough() do
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer,
    'COUNT', math.min(CHUNK, max_records - #candidates), 'STREAMS', S, '>')
  if not (read and read[1] and #read[1][2] > 0) then break end
  for _, entry in ipairs(read[1][2]) do add(entry) end
end
if #candidates == 0 then return {} end
-- 3. one envelope, within the byte cap; hand the rest back at once
local out = {redis.call('HGET', ENV, digest) or ''}
local total = 0
local taken = 0
local release = {}
for _, entry in ipairs(candidates) do
  local f = entry[2]
  local v = field(f, 'v') or ''
  if field(f, 'e') == digest and taken < max_records
      and (taken == 0 or total + #v <= max_bytes) then
    taken = taken + 1
    total = total + #v
    out[#out + 1] = entry[1]
    out[#out + 1] = v
    out[#out + 1] = field(f, 't') or '0'
    out[#out + 1] = field(f, 'a') or '0'
    out[#out + 1] = field(f, 'f') or ''
  else
    release[#release + 1] = entry[1]
  end
end
-- in chunks: Lua's unpack() refuses more than about 8,000 values, and a script that
-- fails here has already read the candidates into the pending list (leased for the
-- whole lease, delivered to nobody)
for start = 1, #release, 1000 do
  local args = {'XCLAIM', S, group, consumer, 0}
  for i = start, math.min(start + 999, #release) do args[#args + 1] = release[i] end
  args[#args + 1] = 'TIME'
  args[#args + 1] = 1
  args[#args + 1] = 'JUSTID'
  redis.call(unpack(args))
end
return out
