#!/usr/bin/env bash
# Makes sure a NATS server with JetStream answers at $NATS_URL (default nats://127.0.0.1:4222):
# starts a local nats-server -js (installing Debian's nats-server with apt-get if missing)
# when nothing answers on a local port. Source it or run it; it prints what it did.
set -euo pipefail
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
hostport=${NATS_URL#*://}
hostport=${hostport##*@}
hostport=${hostport%%/*}
host=${hostport%%:*}
port=${hostport##*:}
[ "$port" = "$host" ] && port=4222

# A NATS server greets every connection with an INFO line.
ping() {
  python3 - "$host" "$port" <<'PY'
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)
    sys.exit(0 if s.recv(5).startswith(b"INFO") else 1)
except OSError:
    sys.exit(1)
PY
}

if ping; then
  echo "NATS answers at $host:$port"
  exit 0
fi
case "$host" in
  127.*|localhost) ;;
  *) echo "NATS at $NATS_URL does not answer, and it is not local: start it or set NATS_URL" >&2; exit 1 ;;
esac
server=$(command -v nats-server || true)
[ -z "$server" ] && [ -x /usr/sbin/nats-server ] && server=/usr/sbin/nats-server
if [ -z "$server" ]; then
  echo "installing nats-server"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server) >/dev/null
  server=$(command -v nats-server || echo /usr/sbin/nats-server)
fi
store=/tmp/warren-test-nats-$port
mkdir -p "$store"
nohup "$server" -js -sd "$store" -a "$host" -p "$port" >"$store.log" 2>&1 &
for _ in $(seq 1 50); do
  if ping; then echo "started nats-server on $host:$port"; exit 0; fi
  sleep 0.1
done
echo "nats-server did not come up on $host:$port (see $store.log)" >&2
exit 1
