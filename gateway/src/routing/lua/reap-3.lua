-- Expires what time has passed on one platform: builders past their lease (their active
-- allocations fail), allocations past their heartbeat deadline, stale links (a builder left with
-- none leaves the pool) and lapsed demands.
--   KEYS[1] leases        <B>leases        (zset id -> lease expiry)
--   KEYS[2] open allocs   <B>allocs:open   (zset build -> deadline)
--   KEYS[3] demands       <B>demand
--   ARGV[1] key base B  ARGV[2] nowMs  ARGV[3] ended allocation retention ms
-- Returns JSON {expiredBuilders, failedAllocations, expiredAllocations}.
--- @include "includes/routing"

local B, now, retention = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local expiredBuilders, failedAllocations, expiredAllocations = {}, {}, {}
-- Builders first: their allocations fail (the builder is gone) rather than merely expire.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', str(now))) do
  expiredBuilders[#expiredBuilders + 1] = id
  for _, buildId in ipairs(expireBuilder(B, id, now, retention)) do
    failedAllocations[#failedAllocations + 1] = buildId
  end
end
for _, buildId in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', str(now))) do
  settle(B, buildId, now, retention)
  if redis.call('HGET', allocKey(B, buildId), 'state') == 'expired' then
    expiredAllocations[#expiredAllocations + 1] = buildId
  end
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  -- No replica holds it: out of the pool, so acquire need not step over it; a renewal or a
  -- registration puts it back.
  if pruneLinks(B, id, now) == 0 then redis.call('ZREM', poolKey(B), id) end
end
local demands = redis.call('HGETALL', KEYS[3])
for i = 1, #demands, 2 do
  if tonumber(cjson.decode(demands[i + 1]).untilMs) <= now then redis.call('HDEL', KEYS[3], demands[i]) end
end
return cjson.encode({
  expiredBuilders = expiredBuilders, failedAllocations = failedAllocations, expiredAllocations = expiredAllocations,
})
