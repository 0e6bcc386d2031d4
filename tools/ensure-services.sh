#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1 for the tests. Where they are missing
# or down, install them from Debian's packages and start them (CI and fresh machines).
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
updated=0
apt_install() {
  [ $updated = 1 ] || { as_root apt-get update -qq; updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! pg_up; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql postgresql-client
  version=$(ls /etc/postgresql | sort -V | tail -1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { echo "PostgreSQL did not start" >&2; exit 1; }
fi
# The tests connect as `postgres` over TCP without a password (trust on loopback here);
# where the cluster asks for one, HDHUB_TEST_POSTGRES_URL can carry credentials.
if [ -z "${HDHUB_TEST_POSTGRES_URL:-}" ] && ! psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
  hba=$(as_postgres psql -tAc 'show hba_file')
  # Prepend: the first matching line wins.
  as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  as_postgres psql -qc 'select pg_reload_conf()' >/dev/null
fi

if ! redis_up; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 30); do redis_up && break; sleep 1; done
  redis_up || { echo "Redis did not start" >&2; exit 1; }
fi
echo "PostgreSQL and Redis are up on 127.0.0.1"
