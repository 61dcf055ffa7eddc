-- KEYS[1] product entry. ARGV: version, seconds. Marks versions below `version` stale
-- (a loader that read an older row cannot put it back), unless a newer one is there.
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = tonumber(string.match(cur, '^[PT](%d+)'))
  if v and v > tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], 'T' .. ARGV[1], 'EX', ARGV[2])
return 1
