-- KEYS[1] cart. ARGV: owner, now, exp, ttl_ms, max_line_quantity, max_lines, sku, qty,
-- currency, negative (1/0), price json, product id, added_at, cart id.
return run(function()
  local key = KEYS[1]
  local owner, now, exp, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
  local maxq, maxlines = tonumber(ARGV[5]), tonumber(ARGV[6])
  local sku, qty, icur = ARGV[7], tonumber(ARGV[8]), ARGV[9]
  -- One read: ownership, expiry, currency, line count and the line.
  local h = redis.call('HMGET', key, 'o', 'e', 'cur', 'n', 'q:' .. sku, 'v')
  local st = 'live'
  if not h[1] or not h[2] or time_le(h[2], now) then
    st = 'none'
  elseif h[1] ~= owner then
    bad('CARTNOTFOUND', ARGV[14])
  end
  local cur, n, oldq, version = '', 0, false, 0
  if st == 'live' then
    cur, n, oldq, version = h[3] or '', tonumber(h[4]) or 0, h[5], tonumber(h[6]) or 0
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
    redis.call('HSET', key, 'q:' .. sku, total, 'm:' .. sku, ARGV[11], 'a:' .. sku, ARGV[13], 'p:' .. sku, ARGV[12], 'u', now, 'e', exp, 'v', version + 1)
  else
    local seq = redis.call('HINCRBY', key, 's', 1)
    redis.call('HSET', key, 'q:' .. sku, qty, 'i:' .. sku, seq, 'm:' .. sku, ARGV[11], 'a:' .. sku, ARGV[13], 'p:' .. sku, ARGV[12], 'n', n + 1, 'cur', icur, 'u', now, 'e', exp, 'v', version + 1)
  end
  redis.call('PEXPIRE', key, ttl)
  return redis.call('HGETALL', key)
end)
