-- Marks a builder draining if (and only if) it has no active allocation and its epoch matches,
-- so the fleet can stop it without racing a placement.
--   KEYS[1] builder hash   <B>builder:<id>
--   KEYS[2] pool           <B>pool:idle
--   ARGV[1] epoch  ARGV[2] agent id
-- Returns 1 when it is now draining, 0 otherwise.
local b = redis.call('HMGET', KEYS[1], 'epoch', 'active')
if not b[1] or b[1] ~= ARGV[1] or tonumber(b[2]) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'draining', '1')
-- Draining is sticky for the epoch: it leaves the pool until it registers as a new incarnation.
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
