-- A replica gained a link to an agent: creates the builder (new epoch) when absent or expired,
-- else adds the link and refreshes what the agent described.
--   KEYS[1] builder hash         <B>builder:<id>
--   KEYS[2] its links            <B>builder:<id>:links   (gateway id -> link expiry)
--   KEYS[3] its binding          <B>binding:<id>         (project, instanceId)
--   KEYS[4] leases               <B>leases               (zset id -> lease expiry)
--   KEYS[5] pool                 <B>pool:idle            (zset unbound idle builders -> idle since)
--   KEYS[6] epoch counter        <B>epoch
--   ARGV[1] key base B  ARGV[2] nowMs  ARGV[3] ended allocation retention ms
--   ARGV[4] agent id  ARGV[5] platform  ARGV[6] fleet  ARGV[7] capacity
--   ARGV[8] instance id ('' for none)  ARGV[9] gateway id  ARGV[10] leaseMs
-- Returns JSON {epoch, project?} or {forbidden = instance id the builder belongs to}.
--- @include "includes/routing"

local B, now, retention = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local id, instanceId, gatewayId = ARGV[4], ARGV[8], ARGV[9]
local expiry = now + tonumber(ARGV[10])

local b = redis.call('HMGET', KEYS[1], 'epoch', 'lease', 'instanceId')
local liveRecord = b[1] and tonumber(b[2]) > now
local binding = redis.call('HMGET', KEYS[3], 'project', 'instanceId')
local claimed = binding[2]
if liveRecord and b[3] then claimed = b[3] end
if claimed and claimed ~= instanceId then
  return cjson.encode({ forbidden = claimed })
end

-- It came back after its lease passed: what it ran before is lost, whether or not reap saw it.
if b[1] and not liveRecord then expireBuilder(B, id, now, retention) end

local epoch
if not liveRecord then
  epoch = redis.call('INCR', KEYS[6])
  redis.call('HSET', KEYS[1],
    'agentId', id, 'platform', ARGV[5], 'fleet', ARGV[6], 'capacity', ARGV[7], 'epoch', epoch,
    'active', 0, 'draining', '0', 'lease', str(expiry), 'registeredAt', str(now), 'lastUsedAt', str(now))
  if instanceId ~= '' then redis.call('HSET', KEYS[1], 'instanceId', instanceId) end
  redis.call('HSET', KEYS[2], gatewayId, str(expiry))
  redis.call('ZADD', KEYS[4], str(expiry), id)
else
  epoch = tonumber(b[1])
  redis.call('HSET', KEYS[1], 'fleet', ARGV[6], 'capacity', ARGV[7])
  if not b[3] and instanceId ~= '' then redis.call('HSET', KEYS[1], 'instanceId', instanceId) end
  redis.call('HSET', KEYS[2], gatewayId, str(expiry))
  local lease = math.max(tonumber(b[2]), expiry)
  redis.call('HSET', KEYS[1], 'lease', str(lease))
  redis.call('ZADD', KEYS[4], str(lease), id)
  pruneLinks(B, id, now)
end
if binding[1] and not binding[2] and instanceId ~= '' then
  redis.call('HSET', KEYS[3], 'instanceId', instanceId)
end
-- A new incarnation, a link back after the pool dropped it for having none, or a new capacity.
syncPool(B, id)
return cjson.encode({ epoch = epoch, project = binding[1] or nil })
