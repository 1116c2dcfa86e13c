#!/usr/bin/env bash
# Instructions a server executes per delivery and per connection, counted by callgrind: the
# same fixed load gives the same count within a fraction of a percent, whatever else the
# machine is doing, so two builds can be compared when timing them is too noisy.
#
#   bench/instructions.sh [--connections N] [--channels C] [--rate R] [--seconds S] \
#       NAME 'COMMAND' [NAME 'COMMAND' ...]
#
# COMMAND starts a server on port {port} (e.g. 'target/release/warren serve --port {port}').
# Each server runs four times under `valgrind --tool=callgrind`, a fresh process each time:
# N connections publishing R events/s for S seconds, the same at 3R, and N and 2N connections
# publishing 1 event in 1 second. Per delivery: the instructions the faster rate added over
# the deliveries it added (same connections, same time: the timers cancel out). Per
# connection (connect, handshake, subscribe, close): what N more connections added.
#
# The load generator is `warren bench` from WARREN_BENCH (default target/release/warren).
# Needs valgrind (Debian: `apt-get install valgrind`). Keep loads small: under callgrind a
# server runs 30-80 times slower, and a delivery that misses the bench's drain counts as lost
# (the script says so instead of printing a figure that would be wrong).
set -euo pipefail
cd "$(dirname "$0")/.."

connections=1000 channels=10 rate=5 seconds=5
names=() commands=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --connections) connections=$2; shift 2 ;;
    --channels) channels=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) names+=("$1"); commands+=("$2"); shift 2 ;;
  esac
done
[[ ${#names[@]} -ge 1 ]] || { sed -n '2,20p' "$0"; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 2; }
bench=${WARREN_BENCH:-target/release/warren}
[[ -x $bench ]] || { echo "no load generator at $bench (cargo build --release -p warren)" >&2; exit 2; }

work=$(mktemp -d)
server=
cleanup() { [[ -n $server ]] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# measure NAME COMMAND CONNECTIONS RATE SECONDS: prints "instructions deliveries lost".
measure() {
  local name=$1 cmd=$2 conns=$3 rate=$4 secs=$5 port out json
  port=$(free_port)
  out="$work/$name-$conns-$rate-$secs.callgrind"
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --callgrind-out-file="$out" ${cmd//\{port\}/$port} \
    >"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
  done
  json=$("$bench" bench --url "http://127.0.0.1:$port" --app app-id --key app-key \
    --secret app-secret --connections "$conns" --channels "$channels" --rate "$rate" \
    --duration "$secs" --connect-timeout 120 --drain-ms 3000 --allow-loss --json --quiet) || true
  kill -INT "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=
  python3 - "$out" "$json" <<'PY'
import json, sys
total = None
for line in open(sys.argv[1]):
    if line.startswith(("summary:", "totals:")):
        total = int(line.split()[1])
r = json.loads(sys.argv[2])
print(total, r["deliveries"]["received"], r["deliveries"]["lost"])
PY
}

echo "instructions.sh: $(date -u +%Y-%m-%dT%H:%MZ), warren $(git rev-parse --short HEAD 2>/dev/null || echo '?')," \
  "$connections connections, $channels channels, $rate and $((rate * 3)) events/s for ${seconds}s"
printf '%-12s %22s %22s %8s\n' server "instructions/delivery" "instructions/connection" lost
for i in "${!names[@]}"; do
  name=${names[$i]} cmd=${commands[$i]}
  read -r a_ir a_d a_lost < <(measure "$name" "$cmd" "$connections" "$rate" "$seconds")
  read -r b_ir b_d b_lost < <(measure "$name" "$cmd" "$connections" $((rate * 3)) "$seconds")
  read -r c_ir c_d c_lost < <(measure "$name" "$cmd" "$connections" 1 1)
  read -r d_ir d_d d_lost < <(measure "$name" "$cmd" $((connections * 2)) 1 1)
  python3 - "$name" "$connections" "$a_ir" "$a_d" "$a_lost" "$b_ir" "$b_d" "$b_lost" \
    "$c_ir" "$c_d" "$c_lost" "$d_ir" "$d_d" "$d_lost" <<'PY'
import sys
name, conns = sys.argv[1], int(sys.argv[2])
a_ir, a_d, a_lost, b_ir, b_d, b_lost, c_ir, c_d, c_lost, d_ir, d_d, d_lost = map(int, sys.argv[3:15])
lost = a_lost + b_lost + c_lost + d_lost
if lost or b_d <= a_d:
    print(f"{name:12} {'-':>22} {'-':>22} {lost:8}  (deliveries lost under callgrind: lighten the load)")
    sys.exit()
per_delivery = (b_ir - a_ir) / (b_d - a_d)
per_connection = (d_ir - c_ir - per_delivery * (d_d - c_d)) / conns
print(f"{name:12} {per_delivery:22,.0f} {per_connection:22,.0f} {lost:8}")
PY
done
