-- One-node merge. KEYS[1] customer cart, KEYS[2] guest cart. ARGV: owner, now, exp,
-- ttl_ms, max_line_quantity, max_lines, cart id, ncaps, then ncaps (sku, cap) pairs.
-- Returns {customer cart fields (empty if none), capped, dropped}.
return run(function()
  local key, gkey = KEYS[1], KEYS[2]
  local owner, now, exp, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
  local maxq, maxlines = tonumber(ARGV[5]), tonumber(ARGV[6])
  local caps = {}
  local ncaps = tonumber(ARGV[8])
  for i = 0, ncaps - 1 do
    caps[ARGV[9 + 2 * i]] = tonumber(ARGV[10 + 2 * i])
  end
  local st = cart_state(key, owner, now)
  if st == 'other' then
    bad('CARTNOTFOUND', ARGV[7])
  end
  if key == gkey or cart_state(gkey, 'g', now) ~= 'live' then
    if st == 'live' then
      return {redis.call('HGETALL', key), {}, {}}
    end
    return {{}, {}, {}}
  end
  local gflat = redis.call('HGETALL', gkey)
  local lines, gcur = parse_lines(gflat, 1)
  redis.call('DEL', gkey)
  if st == 'none' then
    create(key, owner, now, exp)
  end
  local capped, dropped = merge_into(key, lines, gcur, caps, maxq, maxlines)
  merge_addresses(key, field_of(gflat, 1, 'ship'), field_of(gflat, 1, 'bill'))
  touch(key, now, exp, ttl)
  return {redis.call('HGETALL', key), capped, dropped}
end)
