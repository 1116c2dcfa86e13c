#!/usr/bin/env bash
# Cross-node delivery: two release-build nodes sharing one Redis, connections spread over both,
# events published through node 1 (so half of every channel's subscribers are on the other node).
#
# Usage: bench/cluster.sh [connections=2000] [channels=20] [rate=500] [seconds=10]
# Needs: a Redis at $REDIS_URL (default redis://127.0.0.1:6379; scripts/ensure-redis.sh starts one).
# WARREN_BIN names the server binary to run (default: the release build, built if needed), so
# two builds can be compared in one sitting; the load generator is always the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-2000}
channels=${2:-20}
rate=${3:-500}
secs=${4:-10}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
bash scripts/ensure-redis.sh >/dev/null
cargo build --release -q -p warren
server_bin=${WARREN_BIN:-target/release/warren}
prefix="bench$$-$RANDOM"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p1=$(free_port); p2=$(free_port)
start() {
  WARREN_LOG=warn WARREN_CLUSTER__BACKEND=redis WARREN_CLUSTER__REDIS_URL="$REDIS_URL" \
    WARREN_CLUSTER__PREFIX="$prefix" WARREN_SERVER__NODE_ID="$1" \
    "$server_bin" serve --port "$2" >/dev/null 2>&1 &
  echo $!
}
n1=$(start bench-1 "$p1"); n2=$(start bench-2 "$p2")
trap 'kill $n1 $n2 2>/dev/null || true' EXIT
for p in $p1 $p2; do
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$p/health" >/dev/null 2>&1 && break; sleep 0.1; done
done
echo "$server_bin ($(git rev-parse --short HEAD 2>/dev/null || echo '?')): 2 nodes + Redis, publishing through node 1"
target/release/warren bench --url "http://127.0.0.1:$p1" --url "http://127.0.0.1:$p2" \
  --connections "$conns" --channels "$channels" --rate "$rate" --duration "$secs" --quiet
