-- Shared by every cart script. A cart is one hash `<prefix>:cart:{<cart id>}`:
--   o = owner ("g" or "c:<customer id>"), v = version, c/u/e = created/updated/expires
--   (fixed-width sortable time keys), n = number of lines, s = line sequence counter,
--   cur = currency of the lines ("" when empty); per line with SKU X: q:X quantity,
--   i:X sequence (line order), m:X unit price (JSON), a:X added_at, p:X product id;
--   ship / bill = the saved shipping / billing address (JSON, validated by the client
--   before writing and again when read; absent when not set).
--   x:<token> marks a two-phase merge as applied (cluster).
local function bad(code, detail)
  error({cart_err = code .. ' ' .. detail})
end

-- a <= b for time keys (20 digits of offset seconds, exact in a double, then 9 of
-- nanoseconds), compared as numbers so no locale collation is involved.
local function time_le(a, b)
  local sa, sb = tonumber(string.sub(a, 1, 20)), tonumber(string.sub(b, 1, 20))
  if sa ~= sb then
    return sa < sb
  end
  return tonumber(string.sub(a, 21)) <= tonumber(string.sub(b, 21))
end

-- 'none' (missing or expired), 'live' (owned by owner) or 'other' (live, someone else's)
local function cart_state(key, owner, now)
  local h = redis.call('HMGET', key, 'o', 'e')
  if not h[1] or not h[2] or time_le(h[2], now) then
    return 'none'
  end
  if h[1] ~= owner then
    return 'other'
  end
  return 'live'
end

local function check_quantity(q, maxq)
  if q == 0 or q > maxq then
    bad('CARTINVALID', 'quantity ' .. tostring(q) .. ' units on one line; 1 to ' .. tostring(maxq) .. ' allowed')
  end
end

local function create(key, owner, now, exp)
  redis.call('DEL', key)
  redis.call('HSET', key, 'o', owner, 'v', 0, 'c', now, 'u', now, 'e', exp, 'n', 0, 's', 0, 'cur', '')
end

local function touch(key, now, exp, ttl_ms)
  redis.call('HINCRBY', key, 'v', 1)
  redis.call('HSET', key, 'u', now, 'e', exp)
  redis.call('PEXPIRE', key, ttl_ms)
end

-- The lines of a flat field/value list (an HGETALL), in line order, and the currency.
local function parse_lines(flat, from)
  local by_sku = {}
  local list = {}
  local cur = ''
  local i = from
  while i < #flat do
    local f, v = flat[i], flat[i + 1]
    local p = string.sub(f, 1, 2)
    if f == 'cur' then
      cur = v
    elseif p == 'q:' or p == 'i:' or p == 'm:' or p == 'a:' or p == 'p:' then
      local sku = string.sub(f, 3)
      local line = by_sku[sku]
      if not line then
        line = {sku = sku}
        by_sku[sku] = line
        table.insert(list, line)
      end
      line[p] = v
    end
    i = i + 2
  end
  local lines = {}
  for _, l in ipairs(list) do
    if l['q:'] and l['i:'] and l['m:'] and l['a:'] and l['p:'] then
      l.q = tonumber(l['q:'])
      l.seq = tonumber(l['i:'])
      table.insert(lines, l)
    end
  end
  table.sort(lines, function(a, b) return a.seq < b.seq end)
  return lines, cur
end

-- Sets (non-empty JSON) or clears ('' or nil) the saved addresses.
local function set_addresses(key, ship, bill)
  for field, value in pairs({ship = ship or '', bill = bill or ''}) do
    if value == '' then
      redis.call('HDEL', key, field)
    else
      redis.call('HSET', key, field, value)
    end
  end
end

-- The value of `name` in a flat field/value list from index `from`, or nil.
local function field_of(flat, from, name)
  local i = from
  while i < #flat do
    if flat[i] == name then
      return flat[i + 1]
    end
    i = i + 2
  end
  return nil
end

-- Cart::merge_from for addresses: the live cart at key keeps its addresses if it has
-- any, else takes the guest's (ship, bill; either may be nil) as a pair.
local function merge_addresses(key, ship, bill)
  if redis.call('HEXISTS', key, 'ship') == 0 and redis.call('HEXISTS', key, 'bill') == 0 then
    set_addresses(key, ship, bill)
  end
end

local function add_line(key, sku, q, m, a, p)
  local seq = redis.call('HINCRBY', key, 's', 1)
  redis.call('HSET', key, 'q:' .. sku, q, 'i:' .. sku, seq, 'm:' .. sku, m, 'a:' .. sku, a, 'p:' .. sku, p)
  redis.call('HINCRBY', key, 'n', 1)
end

-- Cart::merge_from: moves `lines` (guest currency gcur) into the live cart at key.
local function merge_into(key, lines, gcur, caps, maxq, maxlines)
  local capped, dropped = {}, {}
  local h = redis.call('HMGET', key, 'cur', 'n')
  local cur = h[1] or ''
  local n = tonumber(h[2]) or 0
  for _, g in ipairs(lines) do
    local cap = caps[g.sku]
    if cap == nil or cap > maxq then
      cap = maxq
    end
    if cur ~= '' and cur ~= gcur then
      table.insert(dropped, g.sku)
    else
      local have = redis.call('HMGET', key, 'q:' .. g.sku, 'a:' .. g.sku)
      if have[1] then
        local tq = tonumber(have[1])
        local wanted = tq + g.q
        local merged = math.max(math.min(wanted, cap), tq)
        if merged < wanted then
          table.insert(capped, g.sku)
        end
        redis.call('HSET', key, 'q:' .. g.sku, merged)
        if not time_le(g['a:'], have[2]) then
          redis.call('HSET', key, 'm:' .. g.sku, g['m:'], 'a:' .. g.sku, g['a:'])
        end
      elseif cap == 0 or n >= maxlines then
        table.insert(dropped, g.sku)
      else
        local q = math.min(g.q, cap)
        if q < g.q then
          table.insert(capped, g.sku)
        end
        add_line(key, g.sku, q, g['m:'], g['a:'], g['p:'])
        n = n + 1
        if cur == '' then
          cur = gcur
          redis.call('HSET', key, 'cur', cur)
        end
      end
    end
  end
  return capped, dropped
end

local function run(main)
  local ok, res = pcall(main)
  if ok then
    return res
  end
  if type(res) == 'table' and res.cart_err then
    return redis.error_reply(res.cart_err)
  end
  error(res)
end
