#!/usr/bin/env bash
# Tests of scripts/services.sh and scripts/test.sh that need no shared server:
#   1. trust_loopback: on a private cluster (initdb on a free loopback port in a temp dir)
#      whose TCP lines want scram-sha-256, user postgres is refused without a password
#      until trust_loopback has edited pg_hba.conf and reloaded the server;
#   2. scripts/test.sh honours an existing DATABASE_URL: pointed at a port where nothing
#      listens, it stops with an error instead of starting the local server.
#   bash scripts/services-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
fail() { log "services-test: FAIL: $*"; exit 1; }

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] || fail "no PostgreSQL server binaries under /usr/lib/postgresql"
root=$(mktemp -d "${TMPDIR:-/tmp}/commerce-services-test.XXXXXX")
data="$root/data"
cleanup() {
  as_pg "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$root"
}
trap cleanup EXIT
chmod 755 "$root"
mkdir -p "$data"
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$root" "$data"; fi
chmod 700 "$data"
port=$(free_port)
as_pg "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 --no-sync >/dev/null
printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\nfsync = off\n" \
  "$port" "$root" >>"$data/postgresql.conf"
as_pg "$bin/pg_ctl" -D "$data" -l "$root/server.log" -w -t 60 start >/dev/null

connects() { psql -h 127.0.0.1 -p "$port" -U postgres -w -tAc 'SELECT 1' >/dev/null 2>&1; }
connects && fail "the private cluster accepted a password-less TCP login before trust_loopback"
trust_loopback "$data/pg_hba.conf" as_pg "$bin/pg_ctl" -D "$data" reload
ok=""
for _ in $(seq 1 20); do connects && { ok=1; break; }; sleep 0.25; done
[ -n "$ok" ] || fail "trust_loopback did not make the running server trust loopback"
log "services-test: trust_loopback edits pg_hba.conf and reloads: ok"

dead=$(free_port)
if out=$(DATABASE_URL="postgres://postgres@127.0.0.1:$dead/test" bash scripts/test.sh --no-run 2>&1); then
  fail "scripts/test.sh ran with a DATABASE_URL that does not answer"
fi
grep -q "DATABASE_URL does not answer" <<<"$out" || fail "scripts/test.sh did not check the given DATABASE_URL: $out"
log "services-test: scripts/test.sh honours DATABASE_URL: ok"
