#!/usr/bin/env bash
# HTTP API throughput: signed POST /apps/app-id/events over keep-alive connections, measured
# with wrk against a release build. The request is signed once (valid for the 600 s window),
# so the figure is the server's cost of verifying, validating and publishing an event.
#
# Usage: bench/trigger.sh [connections=16] [seconds=10] [wrk threads=1]
# With TLS=1 the server has [server.tls] (a throw-away certificate made with openssl) and wrk
# speaks HTTPS: the same figure with TLS's cost added.
# Needs: wrk (apt-get install wrk), python3, curl (and openssl for TLS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-16}
secs=${2:-10}
threads=${3:-1}

cargo build --release -q -p warren
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
scheme=http
tls=$(mktemp -d)
if [ "${TLS:-0}" = 1 ]; then
  scheme=https
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$tls/key.pem" -out "$tls/cert.pem" 2>/dev/null
  export WARREN_SERVER__TLS__CERT_FILE="$tls/cert.pem" WARREN_SERVER__TLS__KEY_FILE="$tls/key.pem"
fi
WARREN_LOG=warn "${CARGO_TARGET_DIR:-target}/release/warren" serve --port "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$tls"' EXIT
for _ in $(seq 1 100); do curl -fsk "$scheme://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done

lua=$(mktemp --suffix=.lua)
python3 - "$lua" <<'PY'
import hashlib, hmac, json, sys, time
body = json.dumps({"name": "bench", "channels": ["bench-channel"], "data": "x" * 64}, separators=(",", ":"))
path = "/apps/app-id/events"
params = {
    "auth_key": "app-key",
    "auth_timestamp": str(int(time.time())),
    "auth_version": "1.0",
    "body_md5": hashlib.md5(body.encode()).hexdigest(),
}
query = "&".join(f"{k}={params[k]}" for k in sorted(params))
sig = hmac.new(b"app-secret", f"POST\n{path}\n{query}".encode(), hashlib.sha256).hexdigest()
with open(sys.argv[1], "w") as f:
    f.write('wrk.method = "POST"\n')
    f.write(f'wrk.path = "{path}?{query}&auth_signature={sig}"\n')
    f.write('wrk.headers["Content-Type"] = "application/json"\n')
    f.write(f"wrk.body = {json.dumps(body)}\n")
PY
echo "warren $(git rev-parse --short HEAD 2>/dev/null || echo '?'), wrk -t$threads -c$conns -d${secs}s, 64-byte data, no subscribers, $scheme"
wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$lua" "$scheme://127.0.0.1:$port"
echo "server CPU (user+sys ticks): $(awk '{print $14+$15}' /proc/$server/stat) at $(getconf CLK_TCK)/s"
rm -f "$lua"
