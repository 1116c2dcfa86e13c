#!/usr/bin/env bash
# Does a cluster scale out? One node holding N connections against two nodes on Redis holding
# N each (2N in all) at the same load per node: the same channels and event rate, so every node
# delivers as many messages per second in both set-ups. Run back to back, --rounds times, with
# fresh servers (and a fresh Redis key prefix) every run.
#
# Usage: bench/cluster-scale.sh [--rounds 2] [--backends redis,nats] [connections per node=15000] [channels=100] [rate=100] [seconds=10]
#
# --backends lists the cluster backends to run the two-node set-up on, each in every round
# (default: redis): redis, nats, or split (state in Redis, fan-out on NATS: [cluster.state] and
# [cluster.fanout]). CPU is read from /proc: the nodes' CPU per delivery (every delivery, the
# second process's included) and the backend servers' (redis-server and/or nats-server found on
# the port of $REDIS_URL / $NATS_URL) per delivery beside it, split by server for split.
#
# One process may open at most ~20,000 sockets here, so the measuring `warren bench` holds N
# connections (spread over both nodes in the cluster case) and a second `warren bench` holds
# the other N, subscribed to the same channels; it publishes a handful of events itself (its own
# report is not used; the measuring one's counts include those few as duplicates, so loss is
# judged by its `lost` figure). Prints, per set-up: delivery latency from publish (p50, p99),
# the publish request's round trip (p50, p99) and what was lost.
# Needs: redis at $REDIS_URL (scripts/ensure-redis.sh starts one), NATS with JetStream at
# $NATS_URL for --backends nats (scripts/ensure-nats.sh), python3, curl, ss.
# WARREN_BIN: the server binary (default: the release build, in $CARGO_TARGET_DIR when set).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=2
backends=redis
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --backends) backends=$2; shift 2 ;;
    *) break ;;
  esac
done
conns=${1:-15000}
channels=${2:-100}
rate=${3:-100}
secs=${4:-10}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
bash scripts/ensure-redis.sh >/dev/null
export NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
case ",$backends," in *,nats,*|*,split,*) bash scripts/ensure-nats.sh >/dev/null ;; esac
release=${CARGO_TARGET_DIR:-target}/release/warren
[ -x "$release" ] || cargo build --release -q -p warren
bench=$release
server_bin=${WARREN_BIN:-$release}
ulimit -n 20000 2>/dev/null || true
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pids=(); }
trap cleanup EXIT
node_pids=()
node() { # node NAME PORT PREFIX BACKEND (split: state in Redis, fan-out on NATS)
  local jobs=(WARREN_CLUSTER__BACKEND="$4")
  if [ "$4" = split ]; then
    jobs=(WARREN_CLUSTER__STATE__BACKEND=redis WARREN_CLUSTER__FANOUT__BACKEND=nats)
  fi
  env WARREN_LOG=warn "${jobs[@]}" WARREN_CLUSTER__REDIS_URL="$REDIS_URL" \
    WARREN_CLUSTER__NATS_URL="$NATS_URL" \
    WARREN_CLUSTER__PREFIX="$3" WARREN_SERVER__NODE_ID="$1" "$server_bin" serve --port "$2" >/dev/null 2>&1 &
  pids+=($!)
  node_pids+=(--server-pid $!)
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$2/health" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "node $1 did not start" >&2; exit 1
}
common=(--app app-id --key app-key --secret app-secret --channels "$channels" --channel-prefix scale)
# The pid of the server listening on the port of URL (redis://h:6379, nats://h:4222).
pid_on_port() {
  local port=${1##*:}; port=${port%%/*}
  ss -ltnpH "sport = :$port" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1
}
# CPU time (ns) a process has used, from /proc.
cpu_ns() { python3 -c 'import os,sys; f=open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")",1)[1].split(); print((int(f[11])+int(f[12]))*10**9//os.sysconf("SC_CLK_TCK"))' "$1" 2>/dev/null || echo 0; }
run() { # run single|redis|nats|split
  local prefix="scale$$-$RANDOM" p1 p2 urls share=1 backend_pids=()
  p1=$(free_port); p2=$(free_port)
  node_pids=()
  if [ "$1" = single ]; then
    node single-1 "$p1" "$prefix" local
    urls=(--url "http://127.0.0.1:$p1")
  else
    node scale-1 "$p1" "$prefix" "$1"; node scale-2 "$p2" "$prefix" "$1"
    case "$1" in
      nats) backend_pids=("nats=$(pid_on_port "$NATS_URL")") ;;
      redis) backend_pids=("redis=$(pid_on_port "$REDIS_URL")") ;;
      split) backend_pids=("redis=$(pid_on_port "$REDIS_URL")" "nats=$(pid_on_port "$NATS_URL")") ;;
    esac
    # The nodes deliver to the second process's connections too: twice what is measured.
    share=2
    urls=(--url "http://127.0.0.1:$p1" --url "http://127.0.0.1:$p2")
    # The other N connections, held by a second process on the same channels.
    "$bench" bench "${urls[@]}" "${common[@]}" --connections "$conns" --rate 0.05 \
      --duration $((secs + 60)) --drain-ms 0 --threads 1 --allow-loss --quiet >/dev/null 2>&1 &
    local holder=$!
    pids+=($holder)
    until [ "$(curl -fs "http://127.0.0.1:$p2/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["connections"])')" -ge $((conns / 2)) ]; do sleep 0.5; done
  fi
  # name=before for each backend server, then name=used after the run.
  local before=() used=() b
  for b in "${backend_pids[@]}"; do before+=("$(cpu_ns "${b#*=}")"); done
  local report
  report=$("$bench" bench "${urls[@]}" "${common[@]}" "${node_pids[@]}" --connections "$conns" --rate "$rate" \
    --duration "$secs" --threads 1 --allow-loss --json --quiet)
  local i=0
  for b in "${backend_pids[@]}"; do
    used+=("${b%%=*}=$(($(cpu_ns "${b#*=}") - before[i]))"); i=$((i + 1))
  done
  echo "$report" | python3 -c '
import json, sys
r = json.load(sys.stdin)
share = int(sys.argv[2])
servers = [(n, int(v)) for n, v in (a.split("=") for a in sys.argv[3:])]
backend_ns = sum(v for _, v in servers)
d, rt = r["latency_from_publish"], r["publish"]["request_time"]
received = r["deliveries"]["received"] * share
cpu = r["server"].get("cpu_ns_per_delivery")
cols = [sys.argv[1].ljust(8),
        "delivery p50 %7.2f ms  p99 %7.2f ms" % (d["p50_ns"] / 1e6, d["p99_ns"] / 1e6),
        "publish round trip p50 %6.2f ms  p99 %7.2f ms" % (rt["p50_ns"] / 1e6, rt["p99_ns"] / 1e6),
        "nodes CPU/delivery %s" % ("%.2f us" % (cpu / share / 1e3) if cpu else "-"),
        "backend CPU/delivery %s" % ("%.2f us" % (backend_ns / received / 1e3) if backend_ns and received else "-")
        + (" (%s)" % " + ".join("%s %.2f" % (n, v / received / 1e3) for n, v in servers) if len(servers) > 1 and received else ""),
        "lost %d  deliveries/s %.0f" % (r["deliveries"]["lost"], r["deliveries"]["per_second"] * share)]
print("   ".join(cols))
' "$1" "$share" "${used[@]}"
  cleanup
}
echo "cluster-scale: $(date -u +%FT%RZ), $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $server_bin, $conns connections per node, $channels channels, $rate events/s, ${secs}s"
for _ in $(seq 1 "$rounds"); do
  run single
  for b in ${backends//,/ }; do run "$b"; done
done
