-- KEYS[1] cart. ARGV: owner, now, exp, ttl_ms, max_line_quantity, max_lines, sku, qty,
-- currency, negative (1/0), price json, product id, added_at, cart id.
return run(function()
  local key = KEYS[1]
  local owner, now, exp, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
  local maxq, maxlines = tonumber(ARGV[5]), tonumber(ARGV[6])
  local sku, qty, icur = ARGV[7], tonumber(ARGV[8]), ARGV[9]
  local st = cart_state(key, owner, now)
  if st == 'other' then
    bad('CARTNOTFOUND', ARGV[14])
  end
  local cur, n, oldq = '', 0, false
  if st == 'live' then
    local h = redis.call('HMGET', key, 'cur', 'n', 'q:' .. sku)
    cur, n, oldq = h[1] or '', tonumber(h[2]) or 0, h[3]
  end
  if cur ~= '' and cur ~= icur then
    bad('CARTCURRENCY', cur .. ' ' .. icur)
  end
  if ARGV[10] == '1' then
    bad('CARTINVALID', 'unit_price must not be negative')
  end
  local total
  if oldq then
    total = tonumber(oldq) + math.max(qty, 1)
    check_quantity(total, maxq)
    check_quantity(qty, maxq)
  else
    check_quantity(qty, maxq)
    if n >= maxlines then
      bad('CARTINVALID', 'items the cart is full (' .. tostring(maxlines) .. ' lines)')
    end
  end
  if st == 'none' then
    create(key, owner, now, exp)
  end
  if oldq then
    redis.call('HSET', key, 'q:' .. sku, total, 'm:' .. sku, ARGV[11], 'a:' .. sku, ARGV[13], 'p:' .. sku, ARGV[12])
  else
    add_line(key, sku, qty, ARGV[11], ARGV[13], ARGV[12])
    redis.call('HSET', key, 'cur', icur)
  end
  touch(key, now, exp, ttl)
  return redis.call('HGETALL', key)
end)
