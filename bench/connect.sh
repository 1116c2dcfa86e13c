#!/usr/bin/env bash
# Connection set-up cost: N connections, each doing the WebSocket handshake and one subscription,
# against a fresh release server; reports connects per second (from warren bench) and the
# server's CPU time per connection (from /proc, over the whole run, which is almost all connect
# work: one event is published). Also the server's RSS per idle subscribed connection.
#
# Usage: bench/connect.sh [connections=10000] [channels=100] [source ips=127.0.0.1]
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-10000}
channels=${2:-100}
ips=${3:-127.0.0.1}
cargo build --release -q -p warren
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WARREN_LOG=warn target/release/warren serve --port "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
ticks() { awk '{print $14+$15}' /proc/$server/stat; }
rss_kb() { awk '/VmRSS/ {print $2}' /proc/$server/status; }
hz=$(getconf CLK_TCK)
t0=$(ticks); r0=$(rss_kb)
target/release/warren bench --url "http://127.0.0.1:$port" --connections "$conns" --channels "$channels" \
  --rate 1 --duration 1 --drain-ms 500 --source-ips "$ips" --quiet --server-pid "$server" | grep -E "connect|deliveries|RSS"
t1=$(ticks)
python3 - "$t0" "$t1" "$hz" "$conns" <<'PY'
import sys
t0, t1, hz, n = map(int, sys.argv[1:])
cpu = (t1 - t0) / hz
print(f"  server CPU {cpu:.2f} s for {n} connect+subscribe: {cpu / n * 1e6:.1f} us each")
PY
