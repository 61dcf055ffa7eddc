-- KEYS[1] gate hash: `tokens` = admissions left; `t:<ticket>` = expiry (ms, server
-- clock) of an admitted buyer's ticket. ARGV: ticket id, ticket ttl ms.
-- Returns 1 if admitted (a token taken, the ticket recorded), 0 if sold out.
local left = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '0') or 0
if left <= 0 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HINCRBY', KEYS[1], 'tokens', -1)
redis.call('HSET', KEYS[1], 't:' .. ARGV[1], string.format('%.0f', now + tonumber(ARGV[2])))
return 1
