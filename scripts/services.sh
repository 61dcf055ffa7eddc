# Sourced by scripts/test.sh (and usable on its own): makes sure PostgreSQL and Redis
# are running on 127.0.0.1, installing them with apt-get on a machine that has neither.
# Idempotent; prints what it does on stderr.

log() { printf '[services] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

# Sets the TCP loopback lines of pg_hba.conf file $1 to `trust` and runs the rest of the
# arguments to reload the server (a running server reads pg_hba.conf only on reload, and a
# fresh Debian package starts its cluster at install, before the edit).
trust_loopback() {
  local hba=$1
  shift
  as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  "$@" >&2
}

pg_trusts_loopback() { psql -h 127.0.0.1 -U postgres -w -tAc 'SELECT 1' >/dev/null 2>&1; }

ensure_postgres() {
  local version
  if ! pg_ready; then
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
      log "PostgreSQL is not installed: apt-get install -y postgresql"
      as_root apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >&2
    fi
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting PostgreSQL"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
    for _ in $(seq 1 60); do pg_ready && break; sleep 0.5; done
    pg_ready || { log "PostgreSQL did not come up"; return 1; }
  fi
  # A fresh Debian cluster (started by the package at install) wants passwords on TCP;
  # the test suite uses trust on loopback.
  if ! pg_trusts_loopback; then
    [ -d /etc/postgresql ] || { log "PostgreSQL on 127.0.0.1:5432 refuses user postgres without a password"; return 1; }
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "setting trust auth on loopback and reloading PostgreSQL $version"
    trust_loopback "/etc/postgresql/$version/main/pg_hba.conf" \
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    for _ in $(seq 1 20); do pg_trusts_loopback && break; sleep 0.25; done
    pg_trusts_loopback || { log "PostgreSQL still refuses user postgres after the reload"; return 1; }
  fi
  # The databases the suite uses.
  for db in test root; do
    psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
      || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db" >&2
  done
}

redis_ready() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
  if redis_ready; then return 0; fi
  if ! command -v redis-server >/dev/null 2>&1; then
    log "Redis is not installed: apt-get install -y redis-server"
    as_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server >&2
  fi
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >&2
  for _ in $(seq 1 60); do redis_ready && break; sleep 0.2; done
  redis_ready || { log "Redis did not come up"; return 1; }
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
