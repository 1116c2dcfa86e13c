#!/usr/bin/env bash
# Webhooks under load, on two release-build nodes sharing one Redis.
#
# Usage:
#   bench/webhooks.sh churn [connections=1000] [rate=10000] [seconds=10]   (CHANNELS=100 presence channels)
#       Presence joins and leaves at RATE per second over both nodes (`warren bench-webhooks`),
#       every one a new member, so each causes one member_added or member_removed webhook:
#       their throughput, loss, duplicates and latency from the transition to the POST.
#   bench/webhooks.sh churn-cost [rounds=3] [rate=2000]
#       Server CPU per join or leave under the same churn with webhooks configured and
#       without, alternating within each round: what the webhooks themselves cost.
#   bench/webhooks.sh delivery [rounds=3] [churn_rate=1000]
#       Server CPU per delivered message (`warren bench`, 10,000 connections over 100
#       presence channels, 200 events/s, across both nodes) with webhooks configured and
#       without, alternating within each round, once with no churn and once while
#       `warren bench-webhooks` churns at CHURN_RATE (its webhooks then really flow).
#
# Needs: a Redis at $REDIS_URL (default redis://127.0.0.1:6379; scripts/ensure-redis.sh starts
# one), python3, curl. WARREN_BIN names the server binary, WARREN_BENCH the load generator
# (default: both the release build).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-churn}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
bash scripts/ensure-redis.sh >/dev/null
bench=${WARREN_BENCH:-target/release/warren}
[ -x "$bench" ] || cargo build --release -q -p warren
server_bin=${WARREN_BIN:-target/release/warren}
ulimit -n 20000 2>/dev/null || true
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
delay_ms=3000
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# nodes HOOK_PORT|none: starts two nodes on a fresh key prefix; sets $p1 $p2 $n1 $n2.
nodes() {
  local hook=$1 prefix="whbench$$-$RANDOM" webhook_env=()
  if [ "$hook" != none ]; then
    webhook_env=(WARREN_APPS__0__ID=app-id WARREN_APPS__0__KEY=app-key WARREN_APPS__0__SECRET=app-secret
      "WARREN_APPS__0__WEBHOOKS__0__URL=http://127.0.0.1:$hook/webhooks"
      WARREN_WEBHOOKS__DELAY_REMOVAL_MS=$delay_ms)
  fi
  p1=$(free_port); p2=$(free_port)
  for i in 1 2; do
    local port_var="p$i"
    env WARREN_LOG=warn WARREN_CLUSTER__BACKEND=redis WARREN_CLUSTER__REDIS_URL="$REDIS_URL" \
      WARREN_CLUSTER__PREFIX="$prefix" WARREN_SERVER__NODE_ID="whbench-$i" "${webhook_env[@]}" \
      "$server_bin" serve --port "${!port_var}" >/dev/null 2>&1 &
    pids+=($!)
    eval "n$i=$!"
  done
  for p in $p1 $p2; do
    for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$p/health" >/dev/null 2>&1 && break; sleep 0.1; done
  done
}
stop_nodes() { kill "$n1" "$n2" 2>/dev/null || true; wait "$n1" "$n2" 2>/dev/null || true; sleep 1; }

case "$mode" in
churn)
  conns=${2:-1000}; rate=${3:-10000}; secs=${4:-10}
  hook=$(free_port)
  nodes "$hook"
  echo "$server_bin ($(git rev-parse --short HEAD 2>/dev/null || echo '?')): 2 nodes + Redis, webhooks to this process"
  "$bench" bench-webhooks --url "http://127.0.0.1:$p1" --url "http://127.0.0.1:$p2" \
    --listen "127.0.0.1:$hook" --connections "$conns" --rate "$rate" --duration "$secs" \
    --channels "${CHANNELS:-100}" \
    --removal-delay-ms "$delay_ms" --server-pid "$n1" --server-pid "$n2"
  ;;
churn-cost)
  rounds=${2:-3}; rate=${3:-2000}
  for round in $(seq 1 "$rounds"); do
    for hooks in off on; do
      hook=$(free_port)
      if [ "$hooks" = on ]; then nodes "$hook"; else nodes none; fi
      cpu=$("$bench" bench-webhooks --url "http://127.0.0.1:$p1" --url "http://127.0.0.1:$p2" \
        --listen "127.0.0.1:$hook" --connections 1000 --rate "$rate" --duration 10 \
        --removal-delay-ms "$delay_ms" --server-pid "$n1" --server-pid "$n2" --allow-loss |
        grep -o '[0-9.]* µs per transition' || echo '? µs per transition')
      stop_nodes
      echo "round $round churn $rate/s webhooks $hooks: $cpu"
    done
  done
  ;;
delivery)
  rounds=${2:-3}; churn_rate=${3:-1000}
  for round in $(seq 1 "$rounds"); do
    for churn in 0 "$churn_rate"; do
      for hooks in off on; do
        hook=$(free_port)
        if [ "$hooks" = on ]; then nodes "$hook"; else nodes none; fi
        churner=
        if [ "$churn" != 0 ]; then
          # Runs past the delivery bench's connect, publish and drain.
          "$bench" bench-webhooks --url "http://127.0.0.1:$p1" --url "http://127.0.0.1:$p2" \
            --listen "127.0.0.1:$hook" --connections 200 --rate "$churn" --duration 40 \
            --removal-delay-ms "$delay_ms" --drain-ms 0 --allow-loss >/dev/null 2>&1 &
          churner=$!
          sleep 2
        fi
        out=$("$bench" bench --url "http://127.0.0.1:$p1" --url "http://127.0.0.1:$p2" \
          --app app-id --key app-key --secret app-secret --channel-kind presence \
          --connections 10000 --channels 100 --rate 200 --duration 10 \
          --server-pid "$n1" --server-pid "$n2" --json --quiet) || true
        [ -n "$churner" ] && { kill "$churner" 2>/dev/null || true; wait "$churner" 2>/dev/null || true; }
        stop_nodes
        python3 - "$round" "$churn" "$hooks" "$out" <<'PY'
import json, sys
round_, churn, hooks, raw = sys.argv[1:5]
try:
    r = json.loads(raw)
except ValueError:
    print(f"round {round_} churn {churn}/s webhooks {hooks}: bench failed"); sys.exit()
d, s, lat = r["deliveries"], r["server"], r["latency_from_publish"]
cpu = (s["cpu_ns_per_delivery"] or 0) / 1e3
rest = (s.get("cpu_ns_per_delivery_without_webhooks") or 0) / 1e3
hooks_s = (s.get("webhooks_cpu_ns") or 0) / 1e9
print(f"round {round_} churn {churn:>5}/s webhooks {hooks:>3}: {cpu:6.2f} us CPU per delivery, "
      f"{rest:6.2f} us without the webhook threads ({hooks_s:.2f} s on them), "
      f"p99 {lat['p99_ns'] / 1e6:.2f} ms, lost {d['lost']}")
PY
      done
    done
  done
  ;;
*)
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
