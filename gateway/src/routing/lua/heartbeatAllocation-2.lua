-- Pushes an active allocation's heartbeat deadline (after settling what time decided about it).
--   KEYS[1] allocation     <B>alloc:<build>
--   KEYS[2] open allocs    <B>allocs:open
--   ARGV[1] key base B  ARGV[2] nowMs  ARGV[3] ended allocation retention ms
--   ARGV[4] build id  ARGV[5] allocationLeaseMs
-- Returns the allocation as a JSON object, or nil when there is none.
--- @include "includes/routing"

local B, now, retention = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
settle(B, ARGV[4], now, retention)
if redis.call('HGET', KEYS[1], 'state') == 'active' then
  local deadline = str(now + tonumber(ARGV[5]))
  redis.call('HSET', KEYS[1], 'deadline', deadline)
  redis.call('ZADD', KEYS[2], deadline, ARGV[4])
end
return cjson.encode(toMap(redis.call('HGETALL', KEYS[1])))
