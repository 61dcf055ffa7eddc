-- Cluster merge, phase 1 (guest slot). KEYS[1] guest cart, KEYS[2] its claim.
-- ARGV: owner (customer), now, token, ttl_ms. Moves a live guest cart to the claim
-- (or finds the claim an interrupted merge for the same customer left) and returns
-- {token, claim fields}; false when there is nothing to merge.
return run(function()
  local gkey, ckey = KEYS[1], KEYS[2]
  local owner, now = ARGV[1], ARGV[2]
  local claim = redis.call('HMGET', ckey, 'for', 'tok')
  if claim[1] then
    if claim[1] == owner then
      return {claim[2], redis.call('HGETALL', ckey)}
    end
    return false
  end
  if cart_state(gkey, 'g', now) ~= 'live' then
    return false
  end
  redis.call('RENAME', gkey, ckey)
  redis.call('HSET', ckey, 'for', owner, 'tok', ARGV[3])
  redis.call('PEXPIRE', ckey, ARGV[4])
  return {ARGV[3], redis.call('HGETALL', ckey)}
end)
