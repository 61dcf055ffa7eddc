-- KEYS[1] product entry. ARGV: version, product json, ttl seconds.
-- Entries: "P<version>|<json>" (a product), "T<version>" (invalidated at that version),
-- "N" (known missing). Never replaces a newer product or a newer invalidation.
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = tonumber(string.match(cur, '^[PT](%d+)'))
  if v and v > tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], 'P' .. ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[3])
return 1
