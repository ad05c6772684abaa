-- A replica's link to the builder closed. The record stays until its lease passes.
--   KEYS[1] builder hash   <B>builder:<id>
--   KEYS[2] its links      <B>builder:<id>:links
--   ARGV[1] gateway id  ARGV[2] epoch
if redis.call('HGET', KEYS[1], 'epoch') == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
return 1
