#!/usr/bin/env bash
# Makes sure a PostgreSQL answers on 127.0.0.1:5432 (trust authentication, user postgres), for
# the tests of apps read from a database: does nothing when something answers there; else
# starts the machine's cluster (pg_ctlcluster), else installs PostgreSQL with apt-get and starts
# that, else (no cluster to start) runs a throwaway one (initdb into /tmp). Prints what it did.
set -euo pipefail
# Another port only to try this script beside a PostgreSQL that already answers on 5432.
port=${WARREN_TEST_POSTGRES_PORT:-5432}

answers() {
  python3 - "$port" <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

# Waits up to 10 s for the port to answer; says `$1` and succeeds when it does.
wait_up() {
  for _ in $(seq 1 100); do
    if answers; then echo "$1"; return 0; fi
    sleep 0.1
  done
  return 1
}

if answers; then
  echo "PostgreSQL answers on 127.0.0.1:$port"
  exit 0
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing postgresql"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null
fi
if [ "$port" = 5432 ] && command -v pg_ctlcluster >/dev/null 2>&1 &&
  [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
  version=$(ls /etc/postgresql | sort -n | tail -1)
  # Trust for local TCP, as the tests expect (a fresh package install asks for passwords).
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  if wait_up "started the PostgreSQL $version cluster on 127.0.0.1:$port"; then exit 0; fi
fi
# No cluster to start: a throwaway one, as the postgres user when this is root.
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=/tmp/warren-test-postgres-$port
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups); fi
if [ ! -d "$dir/data" ]; then
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
  "${as_pg[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
fi
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p $port -c listen_addresses=127.0.0.1 -k $dir" start >/dev/null
if wait_up "started a throwaway PostgreSQL in $dir on 127.0.0.1:$port"; then exit 0; fi
echo "PostgreSQL did not come up on 127.0.0.1:$port" >&2
exit 1
