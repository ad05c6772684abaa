-- The builder's cache is gone: frees its binding; a builder with a record goes back to the pool
-- (once its last build of the old project ends, if it still runs one).
--   KEYS[1] binding        <B>binding:<id>
--   KEYS[2] builder hash   <B>builder:<id>
--   KEYS[3] pool           <B>pool:idle
--   ARGV[1] key base B  ARGV[2] agent id
--- @include "includes/routing"

local project = redis.call('HGET', KEYS[1], 'project')
if not project then return 0 end
redis.call('SREM', projectKey(ARGV[1], project), ARGV[2])
redis.call('DEL', KEYS[1])
syncPool(ARGV[1], ARGV[2])
return 1
