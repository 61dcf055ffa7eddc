-- KEYS[1] cart. ARGV: owner, now, exp, ttl_ms, max_line_quantity, sku, qty, cart id.
return run(function()
  local key = KEYS[1]
  local owner, now, exp, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
  local maxq, sku, qty = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
  if cart_state(key, owner, now) ~= 'live' then
    bad('CARTNOTFOUND', ARGV[8])
  end
  if not redis.call('HGET', key, 'q:' .. sku) then
    bad('CARTITEMNOTFOUND', sku)
  end
  if qty == 0 then
    redis.call('HDEL', key, 'q:' .. sku, 'i:' .. sku, 'm:' .. sku, 'a:' .. sku, 'p:' .. sku)
    if redis.call('HINCRBY', key, 'n', -1) <= 0 then
      redis.call('HSET', key, 'n', 0, 'cur', '')
    end
  else
    check_quantity(qty, maxq)
    redis.call('HSET', key, 'q:' .. sku, qty)
  end
  touch(key, now, exp, ttl)
  return redis.call('HGETALL', key)
end)
