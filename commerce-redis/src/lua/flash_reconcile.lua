-- KEYS[1] gate hash. ARGV: units available in the inventory store. Drops expired
-- tickets, then sets tokens = available - outstanding tickets (never below 0): admitted
-- buyers who have not reserved yet still hold their unit. Returns the new token count.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local outstanding = 0
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 't:' then
    if tonumber(all[i + 1]) <= now then
      redis.call('HDEL', KEYS[1], all[i])
    else
      outstanding = outstanding + 1
    end
  end
end
local tokens = math.max(0, tonumber(ARGV[1]) - outstanding)
redis.call('HSET', KEYS[1], 'tokens', string.format('%.0f', tokens))
return tokens
