#!/usr/bin/env bash
# A well-behaved client's publish-to-receive latency, quiet and while 1,000 hostile connections
# flood subscribes and client events and 200 sockets only hold resources (trickled heads and
# bodies, idle keep-alive, frame headers without payload), wave after wave. The hostile load
# runs in a process of its own at the lowest priority (nice 19), standing in for other
# machines; the server and the measuring client run at normal priority. On one machine they
# still share its cores with the load.
#
# Usage: bench/hostile.sh [rounds=2] [seconds=10]
#
# The hostile load is the integration test `hostile_load_against_another_process` (release
# build); the client is `warren bench` with 10 connections on one channel at 50 events/s.
# WARREN_BIN names the server, WARREN_BENCH the client (default: both the release build).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}; secs=${2:-10}
server_bin=${WARREN_BIN:-target/release/warren}
bench=${WARREN_BENCH:-target/release/warren}
[ -x "$bench" ] || cargo build --release -q -p warren
hostile=$(cargo test --release -p warren-server --test integration --no-run 2>&1 |
  grep -o 'target/release/deps/integration-[0-9a-f]*' | head -1)
ulimit -n 20000 2>/dev/null || true
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

p99() {
  "$bench" bench --url "http://127.0.0.1:$1" --connections 10 --channels 1 --rate 50 \
    --duration "$secs" --json --quiet |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["latency_from_publish"]["p99_ns"]/1e6, r["deliveries"]["lost"])'
}

for round in $(seq 1 "$rounds"); do
  port=$(free_port)
  # The bounds of the in-process test (hostile_volume.rs), so every holder is closed soon.
  env WARREN_LOG=error WARREN_SERVER__HANDSHAKE_TIMEOUT_MS=2000 WARREN_SERVER__REQUEST_TIMEOUT_MS=2000 \
    WARREN_SERVER__HTTP_IDLE_TIMEOUT_SECS=1 WARREN_SERVER__ACTIVITY_TIMEOUT=1 WARREN_SERVER__PONG_TIMEOUT=5 \
    "$server_bin" serve --port "$port" >/dev/null 2>&1 &
  server=$!; pids+=("$server")
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
  read -r quiet quiet_lost < <(p99 "$port")
  WARREN_HOSTILE_TARGET="127.0.0.1:$port" WARREN_HOSTILE_SECS=$((secs + 3)) \
    nice -n 19 "$hostile" hostile_load_against_another_process --ignored --nocapture >/tmp/hostile.$$ 2>&1 &
  load=$!; pids+=("$load")
  sleep 2
  read -r loaded loaded_lost < <(p99 "$port")
  wait "$load" || true
  kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
  waves=$(grep -c '^wave' /tmp/hostile.$$ || true); rm -f /tmp/hostile.$$
  python3 -c "q,l=$quiet,$loaded; print(f'round $round: p99 quiet {q:.2f} ms (lost $quiet_lost), under {\"$waves\"} waves of hostile load {l:.2f} ms (lost $loaded_lost): {l/q:.2f}x')"
done
