-- Renews a builder's lease and this replica's link, if the epoch still matches and the lease has
-- not passed (past it, the builder must register again: reap may already have failed its work).
--   KEYS[1] builder hash   <B>builder:<id>
--   KEYS[2] its links      <B>builder:<id>:links
--   KEYS[3] leases         <B>leases
--   KEYS[4] pool           <B>pool:idle   (whether it belongs there also reads <B>binding:<id>)
--   ARGV[1] key base B  ARGV[2] nowMs  ARGV[3] agent id  ARGV[4] gateway id  ARGV[5] epoch
--   ARGV[6] leaseMs  ARGV[7] draining ('1' or '0')
-- Returns 1 when renewed, 0 when stale.
--- @include "includes/routing"

local B, now, id = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local b = redis.call('HMGET', KEYS[1], 'epoch', 'lease')
if not b[1] or b[1] ~= ARGV[5] or tonumber(b[2]) <= now then return 0 end
local expiry = now + tonumber(ARGV[6])
redis.call('HSET', KEYS[2], ARGV[4], str(expiry))
local lease = math.max(tonumber(b[2]), expiry)
redis.call('HSET', KEYS[1], 'lease', str(lease))
redis.call('ZADD', KEYS[3], str(lease), id)
-- Draining is sticky for the epoch: an agent that does not know the fleet drained it must not
-- make it placeable again.
if ARGV[7] == '1' then redis.call('HSET', KEYS[1], 'draining', '1') end
pruneLinks(B, id, now)
-- Acquire or reap may have dropped it from the pool while it had no live link; it has one now.
syncPool(B, id)
return 1
