-- Takes or renews a named leadership. A new holder (or the same one after its lease passed) gets
-- the next fencing token; the counter outlives every lease, so tokens only grow.
--   KEYS[1] leader hash     <prefix>{control}:leader:<name>         (holder, token, expiresAt)
--   KEYS[2] token counter   <prefix>{control}:leader:<name>:token
--   ARGV[1] holder id  ARGV[2] nowMs  ARGV[3] ttlMs
-- Returns {holder, token, expiresAt} when the holder has it, nil otherwise.
local now = tonumber(ARGV[2])
local expiresAt = string.format('%.0f', now + tonumber(ARGV[3]))
local cur = redis.call('HMGET', KEYS[1], 'holder', 'token', 'expiresAt')
if cur[1] and tonumber(cur[3]) > now then
  if cur[1] ~= ARGV[1] then return false end
  redis.call('HSET', KEYS[1], 'expiresAt', expiresAt)
  return { cur[1], cur[2], expiresAt }
end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', token, 'expiresAt', expiresAt)
return { ARGV[1], tostring(token), expiresAt }
