#!/usr/bin/env bash
# WebSocket implementation A/B: the same harness (one task per connection, one broadcast fan-out,
# the same raw-TCP load generator) over tokio-tungstenite (default and 4 KiB read buffer),
# fastwebsockets and Warren's own ws::{handshake, frame}.
#
# For each implementation and run: a fresh `ws-ab serve`; its VmRSS before and after N idle
# connections (and again after publishing); then RATE events/s of PAYLOAD bytes to all N
# connections for SECONDS, and the server's user+system CPU over the publishing window divided
# by the deliveries (events x connections). Prints every run, then a table of medians.
#
# Usage: bench/ws-ab/run.sh [connections=10000] [rate=5] [seconds=10] [runs=2] [impls...]
set -euo pipefail
cd "$(dirname "$0")"
conns=${1:-10000}
rate=${2:-5}
seconds=${3:-10}
runs=${4:-2}
shift $(( $# < 4 ? $# : 4 ))
impls=("$@")
[ ${#impls[@]} -gt 0 ] || impls=(tungstenite tungstenite-4k fastws warren)
payload=64

cargo build --release -q --manifest-path Cargo.toml
bin=target/release/ws-ab
out=$(mktemp -d)
results=$out/results.tsv
: >"$results"
server=""; loader=""
cleanup() {
  [ -n "$loader" ] && kill "$loader" 2>/dev/null || true
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
wait_for() { # file pattern timeout_s
  local i
  for i in $(seq 1 $(( $3 * 10 ))); do grep -q "$2" "$1" && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; return 1
}
field() { grep "$1" "$2" | tr ' ' '\n' | sed -n "s/^$3=//p" | tail -1; }

echo "connections=$conns rate=$rate events/s payload=${payload}B window=${seconds}s runs=$runs (offered $(( conns * rate )) deliveries/s)"
for run in $(seq 1 "$runs"); do
  for impl in "${impls[@]}"; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    $bin serve --impl "$impl" --port "$port" --rate "$rate" --payload "$payload" >"$out/srv.log" 2>&1 &
    server=$!
    wait_for "$out/srv.log" LISTENING 10
    sleep 1
    rss0=$(rss_kb "$server")
    $bin load --port "$port" --connections "$conns" --seconds "$seconds" >"$out/load.log" 2>&1 &
    loader=$!
    wait_for "$out/load.log" READY 120
    sleep 3                                   # let connection set-up settle
    rss1=$(rss_kb "$server")
    kill -USR1 "$server"                      # start publishing
    wait_for "$out/load.log" RESULT $(( seconds + 30 ))
    kill -USR2 "$server"                      # stop; the server drains 0.5 s and reports its CPU
    wait_for "$out/srv.log" PUBLISHED 30
    rss2=$(rss_kb "$server")
    kill "$loader"; wait "$loader" 2>/dev/null || true; loader=""
    kill "$server"; wait "$server" 2>/dev/null || true; server=""
    connected=$(field READY "$out/load.log" connected)
    events=$(field PUBLISHED "$out/srv.log" events)
    receivers=$(field PUBLISHED "$out/srv.log" receivers)
    lagged=$(field PUBLISHED "$out/srv.log" lagged)
    cpu=$(field PUBLISHED "$out/srv.log" cpu_s)
    fps=$(field RESULT "$out/load.log" frames_per_s)
    python3 - "$impl" "$run" "$conns" "$connected" "$rss0" "$rss1" "$rss2" "$events" "$receivers" "$lagged" "$cpu" "$fps" >>"$results" <<'PY'
import sys
impl, run, n, connected, rss0, rss1, rss2, events, receivers, lagged, cpu, fps = sys.argv[1:]
n, connected, rss0, rss1, rss2 = int(n), int(connected), int(rss0), int(rss1), int(rss2)
events, receivers, lagged, cpu, fps = int(events), int(receivers), int(lagged), float(cpu), float(fps)
idle = (rss1 - rss0) * 1024 / connected
after = (rss2 - rss0) * 1024 / connected
deliveries = events * receivers
us = cpu * 1e6 / deliveries
print(f"{impl}\t{run}\t{connected}\t{idle:.0f}\t{after:.0f}\t{us:.3f}\t{fps:.0f}\t{lagged}\t{rss0}\t{rss1}\t{rss2}\t{cpu:.3f}\t{deliveries}")
PY
    tail -1 "$results" | awk -F'\t' '{printf "  run %s %-15s conns %s  RSS/idle conn %6s B  RSS/conn after publishing %6s B  %6s us CPU/delivery  %7s deliveries/s  lagged %s  (VmRSS %s -> %s -> %s KiB, %s s CPU for %s deliveries)\n", $2, $1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13}'
  done
done

python3 - "$results" "$conns" "$rate" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
conns, rate = int(sys.argv[2]), int(sys.argv[3])
order = []
for r in rows:
    if r[0] not in order:
        order.append(r[0])
print()
print(f"medians over runs; {conns} connections, {rate} events/s x {conns} = {rate*conns} deliveries/s offered")
print(f"| implementation | RSS per idle connection | RSS per connection after publishing | server CPU per delivery | deliveries/s received | lagged |")
print(f"|---|---|---|---|---|---|")
for impl in order:
    rs = [r for r in rows if r[0] == impl]
    med = lambda i, t=float: statistics.median(t(r[i]) for r in rs)
    each = lambda i: " / ".join(r[i] for r in rs)
    print(f"| {impl} | {med(3):,.0f} B ({each(3)}) | {med(4):,.0f} B ({each(4)}) | {med(5):.2f} us ({each(5)}) | {med(6):,.0f} ({each(6)}) | {sum(int(r[7]) for r in rs)} |")
PY
