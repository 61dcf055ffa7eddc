-- Cluster merge, phase 2 (customer slot). KEYS[1] customer cart. ARGV: owner, now, exp,
-- ttl_ms, max_line_quantity, max_lines, cart id, token, ncaps, caps pairs, then the
-- claim's fields. Idempotent per token. Returns as cart_merge.lua.
return run(function()
  local key = KEYS[1]
  local owner, now, exp, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
  local maxq, maxlines = tonumber(ARGV[5]), tonumber(ARGV[6])
  local token = ARGV[8]
  local caps = {}
  local ncaps = tonumber(ARGV[9])
  for i = 0, ncaps - 1 do
    caps[ARGV[10 + 2 * i]] = tonumber(ARGV[11 + 2 * i])
  end
  local st = cart_state(key, owner, now)
  if st == 'other' then
    bad('CARTNOTFOUND', ARGV[7])
  end
  if st == 'live' and redis.call('HEXISTS', key, 'x:' .. token) == 1 then
    return {redis.call('HGETALL', key), {}, {}}
  end
  local lines, gcur = parse_lines(ARGV, 10 + 2 * ncaps)
  if st == 'none' then
    create(key, owner, now, exp)
  end
  local capped, dropped = merge_into(key, lines, gcur, caps, maxq, maxlines)
  local from = 10 + 2 * ncaps
  merge_addresses(key, field_of(ARGV, from, 'ship'), field_of(ARGV, from, 'bill'))
  redis.call('HSET', key, 'x:' .. token, 1)
  touch(key, now, exp, ttl)
  return {redis.call('HGETALL', key), capped, dropped}
end)
