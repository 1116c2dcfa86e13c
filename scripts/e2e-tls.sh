#!/usr/bin/env bash
# End-to-end tests of native TLS: a CA and two server certificates made here with openssl (no
# key is committed: they live in a temporary directory for this run), `warren serve` with
# [server.tls], then pusher-js with forceTLS and the `pusher` Node SDK with useTLS
# (tests/e2e/tls/, trusting the CA through NODE_EXTRA_CA_CERTS; the last test swaps the
# certificate and sends SIGHUP with clients connected), then the Python SDK with ssl=True
# (tests/e2e-python/tls/, trusting it through the SDK's backend option: WARREN_TLS_CA).
# Needs tests/e2e's node_modules and tests/e2e-python's venv, which scripts/test.sh installs
# before it calls this. Usage: scripts/e2e-tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."

dir=$(mktemp -d)
server=""
log="$dir/server.log"
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT

# The CA, then a server certificate for localhost and 127.0.0.1 with an EC key written as
# SEC1 ("EC PRIVATE KEY"), and the one to swap in with an RSA key as PKCS#1 ("RSA PRIVATE
# KEY"): both forms the server must read, besides PKCS#8 (the Rust tests' keys).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=Warren e2e CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
issue() { # NAME KEY-ARGS... : NAME.pem, NAME.key (traditional form)
  local name=$1; shift
  openssl req -new -nodes "$@" -subj "/CN=warren-$name" -keyout "$dir/$name.p8" -out "$dir/$name.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -days 2 \
    -set_serial "0x$(openssl rand -hex 8)" -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null
}
issue server -newkey ec -pkeyopt ec_paramgen_curve:P-256
openssl ec -in "$dir/server.p8" -out "$dir/server.key" 2>/dev/null
issue next -newkey rsa:2048
openssl rsa -in "$dir/next.p8" -traditional -out "$dir/next.key" 2>/dev/null
grep -q "BEGIN EC PRIVATE KEY" "$dir/server.key"
grep -q "BEGIN RSA PRIVATE KEY" "$dir/next.key"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WARREN_LOG=info WARREN_SERVER__TLS__CERT_FILE="$dir/server.pem" WARREN_SERVER__TLS__KEY_FILE="$dir/server.key" \
  WARREN_APPS__1__ID=424242 WARREN_APPS__1__KEY=py-app-key WARREN_APPS__1__SECRET=py-app-secret \
  "${CARGO_TARGET_DIR:-target}/debug/warren" serve --port "$port" >"$log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  if curl -fs --cacert "$dir/ca.pem" "https://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$log"; echo "TLS server did not start"; exit 1; fi
  sleep 0.1
done

fail() { echo "--- TLS server log"; cat "$log"; exit 1; }
(cd tests/e2e && NODE_EXTRA_CA_CERTS="$dir/ca.pem" WARREN_TLS_PORT=$port WARREN_TLS_DIR="$dir" \
  WARREN_TLS_PID=$server npm run --silent test:tls) || fail
grep -q "TLS certificate reloaded" "$log" || fail
WARREN_TLS_CA="$dir/ca.pem" WARREN_TLS_PORT=$port \
  tests/e2e-python/.venv/bin/python -m unittest discover -s tests/e2e-python/tls -v || fail
