-- KEYS[1] gate hash. ARGV: ticket id. Returns the token of a ticket still outstanding
-- (idempotent: a ticket gives back at most once). Returns 1 if a token went back.
if redis.call('HDEL', KEYS[1], 't:' .. ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'tokens', 1)
  return 1
end
return 0
