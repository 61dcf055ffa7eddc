#!/usr/bin/env bash
# Runs every benchmark scenario briefly on whatever backends are configured
# (DATABASE_URL / REDIS_URL), with the same fixtures as the tests. CI uses it to keep
# the harness working; the figures of a quick run mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_postgres
ensure_redis
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
cargo run -p commerce-benches --bin commerce-bench -- all --quick
