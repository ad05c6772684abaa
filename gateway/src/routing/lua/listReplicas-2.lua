-- Lists live replicas and forgets those whose announcement expired.
--   KEYS[1] replicas       <prefix>{control}:replicas
--   KEYS[2] replica URLs   <prefix>{control}:replicas:url
--   ARGV[1] nowMs
-- Returns a flat list: gateway id, URL, gateway id, URL, ...
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local url = redis.call('HGET', KEYS[2], id)
  if url then
    out[#out + 1] = id
    out[#out + 1] = url
  end
end
return out
