#!/usr/bin/env bash
# The whole test suite, on a fresh machine or this one:
#   1. uses $DATABASE_URL and $REDIS_URL when set, else makes sure PostgreSQL and Redis
#      run on 127.0.0.1 (starts or installs them, with trust auth on loopback);
#   2. starts the fixtures in scripts/fixtures/ (a local Redis Cluster, a PostgreSQL
#      streaming replica) on free loopback ports in temp dirs, and stops them on exit;
#   3. runs every test of the workspace, doc tests included.
# Adapter tests fail (they never skip) when a server is missing.
# Extra arguments go to `cargo test` (e.g. `bash scripts/test.sh -p commerce-redis`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

# An existing DATABASE_URL / REDIS_URL is used as given (only checked to answer);
# without one, the local servers are started (or installed) and used.
if [ -n "${DATABASE_URL:-}" ]; then
  pg_isready -q -d "$DATABASE_URL" || { log "DATABASE_URL does not answer: $DATABASE_URL"; exit 1; }
else
  ensure_postgres
  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
fi
if [ -n "${REDIS_URL:-}" ]; then
  redis-cli -u "$REDIS_URL" ping 2>/dev/null | grep -q PONG || { log "REDIS_URL does not answer: $REDIS_URL"; exit 1; }
else
  ensure_redis
  export REDIS_URL=redis://127.0.0.1:6379
fi
bash scripts/ensure-chromium.sh   # the web example's browser test

fixtures=()
stop_fixtures() {
  for f in "${fixtures[@]}"; do bash "$f" stop || true; done
}
trap stop_fixtures EXIT
for f in scripts/fixtures/*.sh; do
  [ -e "$f" ] || continue
  # Each fixture's `start` prints `export NAME=value` lines for the tests.
  exports=$(bash "$f" start)
  fixtures+=("$f")
  eval "$exports"
done

cargo test --workspace --all-features "$@"
