#!/usr/bin/env bash
# Compares Pusher-compatible servers under identical `warren bench` load, back to back, with a
# fresh server for every run, and prints every figure and its ratio to the first server.
#
# Usage:
#   bench/compare.sh [--rounds N] [--cases light,memory,...] NAME 'COMMAND' [NAME 'COMMAND' ...]
#
# COMMAND starts one server in the foreground and contains `{port}` where its port goes; it must
# serve app key `app-key` (id `app-id`, secret `app-secret`), as Warren's demo app does. E.g.
#   bench/compare.sh warren 'target/release/warren serve --port {port}' \
#     other '/path/to/other-server --port {port}'
#
# Cases (names for --cases; default: all):
#   sat100   saturation: 10k connections, 100 channels x 100 subscribers, 2,500 events/s offered
#   sat1     saturation: 10k connections on one channel, 100 events/s
#   light    light load: 10k connections, 100 channels, 200 events/s
#   memory   server RSS per idle subscribed connection, 15k connections
#   connect  server CPU per connect + subscribe, 10k connections
# Each case runs --rounds times (default 2) per server, servers alternating within a round.
# Needs: a release build of warren (for the load generator), python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=2
cases="sat100,sat1,light,memory,connect"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --cases) cases=$2; shift 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ] || [ $(($# % 2)) -ne 0 ]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
names=(); commands=()
while [ $# -gt 0 ]; do names+=("$1"); commands+=("$2"); shift 2; done

bench=${WARREN_BENCH:-target/release/warren}
[ -x "$bench" ] || cargo build --release -q -p warren
ulimit -n 20000 2>/dev/null || true
results=$(mktemp)
trap 'rm -f "$results"; [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# start COMMAND: runs it on a free port; sets $server and $port.
start() {
  port=$(free_port)
  local cmd=${1//\{port\}/$port}
  bash -c "exec $cmd" >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then return; fi
    kill -0 "$server" 2>/dev/null || { echo "server did not start: $cmd" >&2; exit 1; }
    sleep 0.1
  done
  echo "server did not listen: $cmd" >&2; exit 1
}

stop() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=; sleep 1; }

# run NAME CASE: one fresh server, one bench run; appends "case name metric value" lines.
run() {
  local name=$1 case=$2 cmd=$3 args json t0 t1
  case "$case" in
    sat100) args="--connections 10000 --channels 100 --rate 2500 --duration 10 --threads 1 --allow-loss" ;;
    sat1) args="--connections 10000 --channels 1 --rate 100 --duration 10 --allow-loss" ;;
    light) args="--connections 10000 --channels 100 --rate 200 --duration 10" ;;
    memory) args="--connections 15000 --channels 150 --rate 1 --duration 1 --drain-ms 500 --allow-loss" ;;
    connect) args="--connections 10000 --channels 100 --rate 1 --duration 1 --drain-ms 500 --allow-loss" ;;
    *) echo "unknown case $case" >&2; exit 2 ;;
  esac
  start "$cmd"
  t0=$(ticks "$server")
  # shellcheck disable=SC2086
  json=$("$bench" bench --url "http://127.0.0.1:$port" --app app-id --key app-key --secret app-secret \
    $args --server-pid "$server" --json --quiet) || true
  t1=$(ticks "$server")
  stop
  python3 - "$case" "$name" "$t0" "$t1" "$(getconf CLK_TCK)" "$json" >>"$results" <<'PY'
import json, sys
case, name, t0, t1, hz, raw = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
try:
    r = json.loads(raw)
except ValueError:
    print(case, name, "failed", 1); sys.exit()
d, s, lat = r["deliveries"], r["server"], r["latency_from_publish"]
out = {"lost": d["lost"]}
if case in ("sat100", "sat1", "light"):
    out["deliveries_per_s"] = d["per_second"]
    out["cpu_us_per_delivery"] = (s["cpu_ns_per_delivery"] or 0) / 1e3
    out["p99_ms"] = lat["p99_ns"] / 1e6
if case == "memory":
    out["rss_bytes_per_conn"] = s["rss_per_connection_bytes"]
if case == "connect":
    conns = r["connections"]["connected"] or 1
    out["cpu_us_per_connect"] = (t1 - t0) / hz * 1e6 / conns
for k, v in out.items():
    print(case, name, k, v)
PY
}

echo "compare.sh: $(date -u +%Y-%m-%dT%H:%MZ), warren $(git rev-parse --short HEAD 2>/dev/null || echo '?'), rounds $rounds"
IFS=, read -r -a case_list <<<"$cases"
for case in "${case_list[@]}"; do
  for round in $(seq 1 "$rounds"); do
    for i in "${!names[@]}"; do
      echo "  $case round $round: ${names[$i]}" >&2
      run "${names[$i]}" "$case" "${commands[$i]}"
    done
  done
done

python3 - "$results" "${names[@]}" <<'PY'
import sys, collections
path, names = sys.argv[1], sys.argv[2:]
vals = collections.defaultdict(list)
order = []
for line in open(path):
    case, name, metric, value = line.split()
    if (case, metric) not in order:
        order.append((case, metric))
    vals[(case, metric, name)].append(float(value))
base = names[0]
print(f"{'case':8} {'metric':22} " + " ".join(f"{n:>26}" for n in names) + "   ratio to " + base)
for case, metric in order:
    cells, means = [], []
    for n in names:
        v = vals.get((case, metric, n), [])
        means.append(sum(v) / len(v) if v else None)
        cells.append(" / ".join(f"{x:.4g}" for x in v) or "-")
    ratios = []
    for m in means[1:]:
        ratios.append(f"{means[0] / m:.2f}x" if m and means[0] is not None else "-")
    print(f"{case:8} {metric:22} " + " ".join(f"{c:>26}" for c in cells) + "   " + " ".join(ratios))
PY
