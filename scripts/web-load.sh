#!/usr/bin/env bash
# Load test of the web example at the HTTP boundary, with wrk (Debian's package):
# product page, search and add-to-cart, then a flash-sale burst through HTTP checkout
# (one unit of FLASH-1 per buyer, far more buyers than units) that must sell no unit
# twice. Each scenario prints one JSON line (p50/p99 in ms, responses by status).
#   bash scripts/web-load.sh                                  # 1,000,000 products in memory
#   PRODUCTS=100000 bash scripts/web-load.sh --database-url postgres://... --redis-url redis://...
# Extra arguments go to the example. Not part of CI (it takes minutes and a release build).
set -euo pipefail
cd "$(dirname "$0")/.."

products="${PRODUCTS:-1000000}"
seconds="${DURATION:-20}"
connections="${CONNECTIONS:-16}"
threads=$((connections < 2 ? connections : 2))
flash_units="${FLASH_UNITS:-100}"
flash_connections="${FLASH_CONNECTIONS:-200}"
flash_seconds="${FLASH_DURATION:-5}"

if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --quiet --release -p commerce-examples --example web
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
base="http://127.0.0.1:$port"
work=$(mktemp -d)
# Rate limits out of the way: one address sends everything here.
target/release/examples/web --listen "127.0.0.1:$port" --products "$products" \
  --flash-units "$flash_units" --ip-rate 1000000 --search-rate 10000000 \
  --checkout-rate 10000000 "$@" >"$work/server.log" 2>&1 &
server=$!
stop() {
  if kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server"
    wait "$server" || true
  fi
  echo "--- web example output:"
  cat "$work/server.log"
  rm -rf "$work"
}
trap stop EXIT

echo "seeding $products products..."
for _ in $(seq 1 3600); do
  curl -fsS -o /dev/null "$base/openapi.json" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "the example exited"; exit 1; }
  sleep 1
done
grep seeded "$work/server.log" || true

# 2,000 product slugs for the product-page scenario.
python3 - "$base" >"$work/slugs" <<'EOF'
import json, sys, urllib.parse, urllib.request
base, cursor, n = sys.argv[1], None, 0
while n < 2000:
    url = base + "/api/search?q=&sort=newest&limit=100" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
    page = json.load(urllib.request.urlopen(url))
    for p in page["products"]:
        print(p["slug"]); n += 1
    cursor = page["next_cursor"]
    if not cursor:
        break
EOF

for scenario in product search cart; do
  SCENARIO=$scenario SLUGS="$work/slugs" PRODUCTS="$products" \
    wrk -t"$threads" -c"$connections" -d"${seconds}s" --timeout 10s -s scripts/web-load.lua "$base" \
    | grep '^{'
done

# The flash sale: $flash_connections buyers at once, each checkout a new customer.
SCENARIO=flash wrk -t2 -c"$flash_connections" -d"${flash_seconds}s" --timeout 10s \
  -s scripts/web-load.lua "$base" | grep '^{'
# Let the pipeline settle (reservations become sales or are released), then count.
for _ in $(seq 1 60); do
  reserved=$(curl -fsS "$base/api/stock/FLASH-1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["reserved"])')
  [ "$reserved" = "0" ] && break
  sleep 1
done
curl -fsS "$base/api/stock/FLASH-1" | python3 -c "
import json, sys
s = json.load(sys.stdin)
units = $flash_units
sold = s['sold'] + s['reserved']
oversold = max(0, sold - units)
consistent = s['available'] + s['reserved'] + s['sold'] == units
print(json.dumps({'scenario': 'http-flash-sale-stock', 'units': units, 'sold': sold,
                  'available': s['available'], 'oversold': oversold, 'consistent': consistent}))
sys.exit(0 if oversold == 0 and consistent else 1)
"
