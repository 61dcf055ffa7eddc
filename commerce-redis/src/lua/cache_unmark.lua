-- KEYS[1] product entry. ARGV: the marker a failed write left ("T<version>"); removes
-- it if it is still there.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
