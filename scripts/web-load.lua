-- wrk script for scripts/web-load.sh: one scenario per run (env SCENARIO), and a JSON
-- summary line at the end (requests, p50/p99 in ms, responses by status).
--   product: GET /api/products/{slug}, slugs from the file in env SLUGS
--   search:  GET /api/search?q={word}
--   cart:    POST /api/carts/{new guest cart}/items, a random sample SKU
--   flash:   POST /api/checkout of one FLASH-1, a new customer and key per request

local scenario = os.getenv("SCENARIO") or "product"
local products = tonumber(os.getenv("PRODUCTS") or "1000")
local words = { "sony", "samsung tv", "laptop", "wireless headphones", "camera", "speaker",
  "apple", "gaming", "refrigerator", "printer", "4k", "bluetooth", "charger", "monitor" }
local slugs = {}
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + (id or 0))
  statuses = {}
  if scenario == "product" then
    for line in io.lines(os.getenv("SLUGS")) do
      slugs[#slugs + 1] = line
    end
  end
end

local function hex(n)
  local t = {}
  for i = 1, n do
    t[i] = string.format("%x", math.random(0, 15))
  end
  return table.concat(t)
end

function request()
  counter = counter + 1
  if scenario == "product" then
    return wrk.format("GET", "/api/products/" .. slugs[math.random(#slugs)])
  elseif scenario == "search" then
    local q = words[math.random(#words)]:gsub(" ", "%%20")
    return wrk.format("GET", "/api/search?q=" .. q .. "&limit=20")
  elseif scenario == "cart" then
    local sku = string.format("SKU-%010d-0", math.random(0, products - 1))
    return wrk.format("POST", "/api/carts/g-" .. hex(32) .. "/items",
      { ["Content-Type"] = "application/json" },
      '{"sku":"' .. sku .. '","quantity":1}')
  else
    local who = "buyer-" .. id .. "-" .. counter
    return wrk.format("POST", "/api/checkout",
      { ["Content-Type"] = "application/json", ["x-customer-id"] = who,
        ["Idempotency-Key"] = "flash-" .. who },
      '{"items":[{"sku":"FLASH-1","quantity":1}]}')
  end
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do
      totals[k] = (totals[k] or 0) + v
    end
  end
  local parts = {}
  for k, v in pairs(totals) do
    parts[#parts + 1] = string.format('"%d":%d', k, v)
  end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    '{"scenario":"http-%s","requests":%d,"seconds":%.1f,"requests_per_sec":%.0f,"p50_ms":%.2f,"p90_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,"socket_errors":%d,"statuses":{%s}}\n',
    scenario, summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, errors, table.concat(parts, ",")))
end
