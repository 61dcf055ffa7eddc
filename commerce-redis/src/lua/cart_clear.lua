-- KEYS[1] cart. ARGV: owner, now. Deletes the cart if it is live and owned by owner.
return run(function()
  if cart_state(KEYS[1], ARGV[1], ARGV[2]) == 'live' then
    return redis.call('DEL', KEYS[1])
  end
  return 0
end)
