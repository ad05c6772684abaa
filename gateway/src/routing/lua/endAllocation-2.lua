-- Ends an allocation and frees its slot. Idempotent: an ended one keeps its first end state.
--   KEYS[1] allocation     <B>alloc:<build>
--   KEYS[2] open allocs    <B>allocs:open
--   ARGV[1] key base B  ARGV[2] nowMs  ARGV[3] ended allocation retention ms
--   ARGV[4] build id  ARGV[5] end state  ARGV[6] reason
-- Returns the allocation as a JSON object, or nil when there is none.
--- @include "includes/routing"

local B, now, retention = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
settle(B, ARGV[4], now, retention)
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'pending' or state == 'active' then endAlloc(B, ARGV[4], ARGV[5], ARGV[6], now, retention) end
return cjson.encode(toMap(redis.call('HGETALL', KEYS[1])))
