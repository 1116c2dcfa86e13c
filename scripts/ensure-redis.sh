#!/usr/bin/env bash
# Makes sure a Redis answers at $REDIS_URL (default redis://127.0.0.1:6379): starts a local
# redis-server (installing it with apt-get if missing) when nothing answers on a local port.
# Source it or run it; it prints what it did.
set -euo pipefail
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
hostport=${REDIS_URL#*://}
hostport=${hostport##*@}
hostport=${hostport%%/*}
host=${hostport%%:*}
port=${hostport##*:}
[ "$port" = "$host" ] && port=6379

ping() {
  python3 - "$host" "$port" <<'PY'
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}

if ping; then
  echo "Redis answers at $host:$port"
  exit 0
fi
case "$host" in
  127.*|localhost) ;;
  *) echo "Redis at $REDIS_URL does not answer, and it is not local: start it or set REDIS_URL" >&2; exit 1 ;;
esac
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
fi
redis-server --port "$port" --bind "$host" --save "" --appendonly no --daemonize yes \
  --logfile "/tmp/warren-test-redis-$port.log" >/dev/null
for _ in $(seq 1 50); do
  if ping; then echo "started redis-server on $host:$port"; exit 0; fi
  sleep 0.1
done
echo "redis-server did not come up on $host:$port (see /tmp/warren-test-redis-$port.log)" >&2
exit 1
