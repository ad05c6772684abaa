-- Rules shared by the routing scripts; pasted where a script says `--- @include "includes/routing"`.
-- B is the key base of one platform, "<prefix>{<platform>}:": every key built from it carries
-- the platform's hash tag, so a script may reach keys named by ids it reads (the builders of a
-- project, the allocations on a builder) and still stay in the one slot of its declared KEYS.
-- Times are epoch milliseconds (13 digits): stored with str(), which never switches to exponent
-- notation the way tostring() would for larger numbers.
-- These rules are MemoryRoutingTable's, step for step; change both together.

local function str(n) return string.format('%.0f', n) end

-- Byte order, like JavaScript's string comparison: table.sort's default follows the server's locale.
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function sorted(list)
  table.sort(list, before)
  return list
end

local function toMap(flat)
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return m
end

local function builderKey(B, id) return B .. 'builder:' .. id end
local function linksKey(B, id) return B .. 'builder:' .. id .. ':links' end
local function allocsOnKey(B, id) return B .. 'builder:' .. id .. ':allocs' end
local function bindingKey(B, id) return B .. 'binding:' .. id end
local function projectKey(B, project) return B .. 'project:' .. project end
local function allocKey(B, buildId) return B .. 'alloc:' .. buildId end
local function leasesKey(B) return B .. 'leases' end
local function poolKey(B) return B .. 'pool:idle' end
local function openKey(B) return B .. 'allocs:open' end

-- Placeable: lease in the future, at least one replica's link in the future, not draining.
local function isLive(B, id, now)
  local h = redis.call('HMGET', builderKey(B, id), 'lease', 'draining')
  if not h[1] or tonumber(h[1]) <= now or h[2] == '1' then return false end
  for _, expiry in ipairs(redis.call('HVALS', linksKey(B, id))) do
    if tonumber(expiry) > now then return true end
  end
  return false
end

-- Keeps a builder's pool entry in step with what it is: in the pool, scored by the time it has
-- been idle since (lastUsedAt), while it has a record, is unbound, not draining, runs nothing and
-- has a slot; out otherwise. Called by every script that changes one of those. What time alone
-- takes away (the lease, the links) is not judged here: acquire and reap drop such entries as
-- they meet them, and the registration or renewal that brings the builder back calls this again.
local function syncPool(B, id)
  -- Binding takes a builder out of the pool (bindBuilder, acquire), so for a bound one, which
  -- most builds end on and most renewals are for, there is nothing to do.
  if redis.call('HEXISTS', bindingKey(B, id), 'project') == 1 then return end
  local h = redis.call('HMGET', builderKey(B, id), 'lastUsedAt', 'active', 'capacity', 'draining')
  if h[1] and tonumber(h[2]) == 0 and tonumber(h[3]) >= 1 and h[4] ~= '1' then
    redis.call('ZADD', poolKey(B), h[1], id)
  else
    redis.call('ZREM', poolKey(B), id)
  end
end

-- Returns how many live links are left.
local function pruneLinks(B, id, now)
  local flat = redis.call('HGETALL', linksKey(B, id))
  local left = 0
  for i = 1, #flat, 2 do
    if tonumber(flat[i + 1]) <= now then redis.call('HDEL', linksKey(B, id), flat[i]) else left = left + 1 end
  end
  return left
end

local function lostLeaseReason(id, epoch, lease)
  return 'builder ' .. id .. ' (epoch ' .. epoch .. ') lost its lease at ' .. lease
end

-- Ends an open allocation; an active one gives its slot back. The record stays readable for
-- `retention` ms so a late status query still learns how it ended.
local function endAlloc(B, buildId, state, reason, now, retention)
  local ak = allocKey(B, buildId)
  local a = redis.call('HMGET', ak, 'state', 'agentId', 'epoch')
  if a[1] == 'active' and a[2] then
    local bk = builderKey(B, a[2])
    if redis.call('HGET', bk, 'epoch') == a[3] and redis.call('SREM', allocsOnKey(B, a[2]), buildId) == 1 then
      redis.call('HINCRBY', bk, 'active', -1)
      redis.call('HSET', bk, 'lastUsedAt', str(now))
      -- Released while it still ran this build: it joins the pool now, idle from now.
      syncPool(B, a[2])
    end
  end
  redis.call('HSET', ak, 'state', state, 'endedAt', str(now))
  redis.call('HDEL', ak, 'deadline')
  if state == 'finished' then
    redis.call('HDEL', ak, 'reason')
  else
    redis.call('HSET', ak, 'reason', reason)
  end
  redis.call('ZREM', openKey(B), buildId)
  redis.call('PEXPIRE', ak, retention)
end

-- Fails the builder's active allocations and removes its record; its binding stays.
local function expireBuilder(B, id, now, retention)
  local h = redis.call('HMGET', builderKey(B, id), 'epoch', 'lease')
  local reason = lostLeaseReason(id, h[1] or '?', h[2] or '?')
  local failed = sorted(redis.call('SMEMBERS', allocsOnKey(B, id)))
  for _, buildId in ipairs(failed) do endAlloc(B, buildId, 'failed', reason, now, retention) end
  redis.call('DEL', builderKey(B, id), linksKey(B, id), allocsOnKey(B, id))
  redis.call('ZREM', leasesKey(B), id)
  redis.call('ZREM', poolKey(B), id)
  return failed
end

-- What time alone decides about an open allocation: a lost builder, a missed deadline.
local function settle(B, buildId, now, retention)
  local a = redis.call('HMGET', allocKey(B, buildId), 'state', 'agentId', 'epoch', 'deadline')
  if a[1] == 'active' then
    local b = redis.call('HMGET', builderKey(B, a[2]), 'epoch', 'lease')
    if not b[1] or b[1] ~= a[3] then
      endAlloc(B, buildId, 'failed', 'builder ' .. a[2] .. ' (epoch ' .. a[3] .. ') is gone', now, retention)
      return
    end
    if tonumber(b[2]) <= now then
      endAlloc(B, buildId, 'failed', lostLeaseReason(a[2], b[1], b[2]), now, retention)
      return
    end
  end
  if (a[1] == 'active' or a[1] == 'pending') and a[4] and tonumber(a[4]) <= now then
    local what = 'not acquired again'
    if a[1] == 'active' then what = 'no heartbeat' end
    endAlloc(B, buildId, 'expired', what .. ' before its deadline ' .. a[4], now, retention)
  end
end
