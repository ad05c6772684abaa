-- Binds a builder (live or not) to a project: compare-and-set, succeeds when unbound or already
-- bound to the same project. Refused while an unbound builder still runs builds of the project
-- it was released from: those must not share it with another.
--   KEYS[1] binding        <B>binding:<id>
--   KEYS[2] builder hash   <B>builder:<id>
--   KEYS[3] pool           <B>pool:idle
--   KEYS[4] project set    <B>project:<project>
--   ARGV[1] agent id  ARGV[2] project
-- Returns 1 when bound, 0 when refused.
local current = redis.call('HGET', KEYS[1], 'project')
if current then
  if current == ARGV[2] then return 1 end
  return 0
end
local b = redis.call('HMGET', KEYS[2], 'active', 'instanceId')
if b[1] and tonumber(b[1]) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'project', ARGV[2])
if b[2] then redis.call('HSET', KEYS[1], 'instanceId', b[2]) end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return 1
