-- Places a build: on the project's warmest builder with a free slot, else (when the project has
-- no builder, or waited spillAfterMs) on the pool builder idle longest, which becomes the
-- project's; else it stays pending and, when only the fleet can help, records a demand.
-- Its work grows with the project's own builders, never with the pool or the fleet: the pool
-- is read from its head (O(log n)), a bounded number of entries at most.
--   KEYS[1] allocation     <B>alloc:<build>
--   KEYS[2] open allocs    <B>allocs:open         (zset build -> heartbeat deadline)
--   KEYS[3] project set    <B>project:<project>   (builders bound to the project)
--   KEYS[4] pool           <B>pool:idle           (zset unbound idle builders -> idle since)
--   KEYS[5] demands        <B>demand              (project -> JSON {sinceMs, boundAgentIds, untilMs})
--   ARGV[1] key base B  ARGV[2] nowMs  ARGV[3] ended allocation retention ms
--   ARGV[4] build id  ARGV[5] project  ARGV[6] platform  ARGV[7] spillAfterMs  ARGV[8] allocationLeaseMs
--   ARGV[9] pool scan limit (most pool entries looked at)
-- Returns JSON: {state = 'active', agentId, epoch, warm, spilled, waitedMs, placedNow},
-- {state = 'pending', reason, waitedMs}, {state = <end state>, reason} or {forbidden = owner}.
--- @include "includes/routing"

local B, now, retention = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local buildId, project = ARGV[4], ARGV[5]
local spillAfterMs, leaseMs = tonumber(ARGV[7]), tonumber(ARGV[8])
local scanLimit = tonumber(ARGV[9])
local deadline = now + leaseMs

local createdAt
local owner = redis.call('HGET', KEYS[1], 'project')
if owner then
  if owner ~= project then return cjson.encode({ forbidden = owner }) end
  settle(B, buildId, now, retention)
  local a = redis.call('HMGET', KEYS[1], 'state', 'reason', 'createdAt', 'agentId', 'epoch', 'warm', 'spilled', 'activeAt')
  if a[1] ~= 'pending' and a[1] ~= 'active' then
    return cjson.encode({ state = a[1], reason = a[2] or a[1] })
  end
  redis.call('HSET', KEYS[1], 'deadline', str(deadline))
  redis.call('ZADD', KEYS[2], str(deadline), buildId)
  if a[1] == 'active' then
    return cjson.encode({
      state = 'active', agentId = a[4], epoch = a[5], warm = a[6] == '1', spilled = a[7] == '1',
      waitedMs = str(tonumber(a[8]) - tonumber(a[3])), placedNow = false,
    })
  end
  createdAt = tonumber(a[3])
else
  createdAt = now
  redis.call('HSET', KEYS[1], 'buildId', buildId, 'project', project, 'platform', ARGV[6], 'state', 'pending',
    'createdAt', str(now), 'deadline', str(deadline))
  redis.call('ZADD', KEYS[2], str(deadline), buildId)
end

local function place(id, warm, spilled)
  local bk = builderKey(B, id)
  redis.call('HINCRBY', bk, 'active', 1)
  redis.call('HSET', bk, 'lastUsedAt', str(now))
  redis.call('SADD', allocsOnKey(B, id), buildId)
  local epoch = redis.call('HGET', bk, 'epoch')
  redis.call('HSET', KEYS[1], 'state', 'active', 'agentId', id, 'epoch', epoch, 'activeAt', str(now),
    'deadline', str(deadline), 'warm', warm and '1' or '0', 'spilled', spilled and '1' or '0')
  redis.call('ZADD', KEYS[2], str(deadline), buildId)
  redis.call('HDEL', KEYS[5], project)
  return cjson.encode({
    state = 'active', agentId = id, epoch = epoch, warm = warm, spilled = spilled,
    waitedMs = str(now - createdAt), placedNow = true,
  })
end

local bound = sorted(redis.call('SMEMBERS', KEYS[3]))
local pick, pickUsed
local boundLive = false
local offline = {}
for _, id in ipairs(bound) do
  if isLive(B, id, now) then
    boundLive = true
    local h = redis.call('HMGET', builderKey(B, id), 'capacity', 'active', 'lastUsedAt')
    local used = tonumber(h[3])
    -- The most recently used one: keeps one VM warm instead of spreading builds over all of them.
    if tonumber(h[2]) < tonumber(h[1]) and (pick == nil or used > pickUsed) then
      pick, pickUsed = id, used
    end
  else
    offline[#offline + 1] = id
  end
end
if pick then return place(pick, true, false) end

local wantPool = #bound == 0 or now - createdAt >= spillAfterMs
-- The pool head held only builders that are no longer placeable, and more entries are left:
-- the pool is not known to be empty, so the fleet is not asked; the next acquire looks further.
local scanCut = false
if wantPool then
  -- The one idle longest first (ties by id, as a ZSET orders equal scores): the others stay
  -- warm for whatever they ran last.
  local head = redis.call('ZRANGE', KEYS[4], 0, scanLimit - 1)
  for _, id in ipairs(head) do
    local h = redis.call('HMGET', builderKey(B, id), 'capacity', 'active')
    if h[1] and tonumber(h[2]) == 0 and tonumber(h[1]) >= 1 and isLive(B, id, now)
        and redis.call('HEXISTS', bindingKey(B, id), 'project') == 0 then
      pick = id
      break
    end
    -- Not placeable, mostly because its lease passed or its last link went away since it
    -- joined the pool: whatever makes it placeable again (a registration, a renewal, its last
    -- build ending) puts it back.
    redis.call('ZREM', KEYS[4], id)
  end
  if pick then
    local inst = redis.call('HGET', builderKey(B, pick), 'instanceId')
    redis.call('HSET', bindingKey(B, pick), 'project', project)
    if inst then redis.call('HSET', bindingKey(B, pick), 'instanceId', inst) end
    redis.call('ZREM', KEYS[4], pick)
    redis.call('SADD', KEYS[3], pick)
    return place(pick, false, #bound > 0)
  end
  scanCut = #head == scanLimit and redis.call('ZCARD', KEYS[4]) > 0
end

local reason = 'no-builder'
if boundLive then reason = 'busy' elseif #bound > 0 then reason = 'starting' end
if (wantPool and not scanCut) or reason == 'starting' then
  local d = redis.call('HGET', KEYS[5], project)
  local demand
  if d then
    demand = cjson.decode(d)
    demand.boundAgentIds = offline
    demand.untilMs = str(math.max(tonumber(demand.untilMs), deadline))
  else
    demand = { sinceMs = str(now), boundAgentIds = offline, untilMs = str(deadline) }
  end
  redis.call('HSET', KEYS[5], project, cjson.encode(demand))
end
return cjson.encode({ state = 'pending', reason = reason, waitedMs = str(now - createdAt) })
