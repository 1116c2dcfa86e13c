#!/usr/bin/env bash
# `warren serve` on PORT with one `warren monitor --json` attached to it (output discarded), for
# measuring what a watching monitor costs (docs/BENCHMARKS.md, "The monitor"). The server is
# this script's process (exec), so a load generator's --server-pid measures the server alone.
# Usage: bench/with-monitor.sh WARREN_BINARY PORT
set -euo pipefail
warren=$1
port=$2
(
  for _ in $(seq 1 100); do
    if curl -fs "http://127.0.0.1:$port/up" >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
  exec "$warren" monitor --url "http://127.0.0.1:$port" --json >/dev/null 2>&1
) &
exec "$warren" serve --port "$port"
