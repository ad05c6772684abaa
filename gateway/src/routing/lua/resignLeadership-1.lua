-- Gives a leadership up, only while it is still held with this token.
--   KEYS[1] leader hash   <prefix>{control}:leader:<name>
--   ARGV[1] token
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
