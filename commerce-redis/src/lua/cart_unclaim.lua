-- Cluster merge, undo of phase 1 when phase 2 cannot run (the customer cart id is
-- someone else's). KEYS[1] guest cart, KEYS[2] claim. ARGV: token.
return run(function()
  if redis.call('HGET', KEYS[2], 'tok') ~= ARGV[1] then
    return 0
  end
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('DEL', KEYS[2])
  end
  redis.call('RENAME', KEYS[2], KEYS[1])
  redis.call('HDEL', KEYS[1], 'for', 'tok')
  return 1
end)
