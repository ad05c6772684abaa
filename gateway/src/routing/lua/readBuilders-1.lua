-- Reads builder records with their links and bindings in one consistent snapshot.
--   KEYS[1] leases   <B>leases   (every builder with a record)
--   ARGV[1] key base B  ARGV[2..] agent ids (none: all builders)
-- Returns JSON [{h = builder hash, links = [gateway id], project?}] (absent builders left out).
--- @include "includes/routing"

local B = ARGV[1]
local ids = {}
if #ARGV > 1 then
  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[1], 0, -1)
end
local out = {}
for _, id in ipairs(sorted(ids)) do
  local flat = redis.call('HGETALL', builderKey(B, id))
  if #flat > 0 then
    out[#out + 1] = {
      h = toMap(flat),
      links = redis.call('HKEYS', linksKey(B, id)),
      project = redis.call('HGET', bindingKey(B, id), 'project') or nil,
    }
  end
end
return cjson.encode(out)
