-- Marks a builder draining if (and only if) it has no active allocation and its epoch matches,
-- so the fleet can stop it without racing a placement.
--   KEYS[1] builder hash   <B>builder:<id>
--   ARGV[1] epoch
-- Returns 1 when it is now draining, 0 otherwise.
local b = redis.call('HMGET', KEYS[1], 'epoch', 'active')
if not b[1] or b[1] ~= ARGV[1] or tonumber(b[2]) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'draining', '1')
return 1
