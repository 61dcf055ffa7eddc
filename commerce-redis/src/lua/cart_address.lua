-- KEYS[1] cart. ARGV: owner, now, exp, ttl_ms, cart id, shipping address JSON ('' clears),
-- billing address JSON ('' clears). Replaces the saved addresses of a live cart of owner.
return run(function()
  local key = KEYS[1]
  local owner, now, exp, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
  if cart_state(key, owner, now) ~= 'live' then
    bad('CARTNOTFOUND', ARGV[5])
  end
  set_addresses(key, ARGV[6], ARGV[7])
  touch(key, now, exp, ttl)
  return table.concat(redis.call('HGETALL', key), '\0')
end)
