#!/usr/bin/env bash
# The whole test suite, from a fresh clone: formatting, lints, every Rust test, and the
# end-to-end suite that drives a real server with the official Pusher clients from npm.
# Installs what it needs (npm and pip packages, a local redis-server and PostgreSQL when none answers) itself. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build"
cargo build --workspace --bins

step "packaging: the systemd unit, the .deb, the container image"
bash scripts/check-packaging.sh

step "Redis for the cluster tests"
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
bash scripts/ensure-redis.sh

step "PostgreSQL for the tests of apps from a database"
bash scripts/ensure-postgres.sh

step "NATS (JetStream) for the cluster tests"
export NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
bash scripts/ensure-nats.sh

step "cargo test"
cargo test --workspace

step "end-to-end: official pusher-js, pusher (Node) and pusher (Python) SDKs against a running server"
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
# The console test (tests/e2e/test/console.test.js) drives Debian's chromium.
bash scripts/ensure-chromium.sh
if [ ! -x tests/e2e-python/.venv/bin/python ]; then python3 -m venv tests/e2e-python/.venv; fi
tests/e2e-python/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/e2e-python/requirements.txt
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
# Where the webhooks of `hook-app` go: tests/e2e/test/webhooks.test.js, then
# tests/e2e-python/test_webhooks.py listen there in turn.
export WARREN_WEBHOOK_PORT=$(free_port)
log=$(mktemp)
# The demo app with watchlist events (tests/e2e/test/users.test.js), a second app with a
# numeric id: the official Python SDK accepts nothing else. A third one sends subscription
# counts (tests/e2e/test/subscription-count.test.js). A fourth sends webhooks
# (tests/e2e/test/webhooks.test.js, tests/e2e-python/test_webhooks.py). The web console is on.
WARREN_LOG=warn WARREN_CONSOLE__ENABLED=true WARREN_APPS__0__WATCHLIST_EVENTS=true WARREN_APPS__1__ID=424242 WARREN_APPS__1__KEY=py-app-key WARREN_APPS__1__SECRET=py-app-secret \
  WARREN_APPS__2__ID=count-app WARREN_APPS__2__KEY=count-app-key WARREN_APPS__2__SECRET=count-app-secret \
  WARREN_APPS__2__SUBSCRIPTION_COUNT_EVENTS=true \
  WARREN_APPS__3__ID=hook-app WARREN_APPS__3__KEY=hook-app-key WARREN_APPS__3__SECRET=hook-app-secret \
  WARREN_APPS__3__WEBHOOKS__0__URL="http://127.0.0.1:$WARREN_WEBHOOK_PORT/webhooks" \
  WARREN_WEBHOOKS__DELAY_REMOVAL_MS=300 WARREN_WEBHOOKS__BATCH_WINDOW_MS=20 \
  "${CARGO_TARGET_DIR:-target}/debug/warren" serve --port "$port" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  if curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 $server 2>/dev/null; then cat "$log"; echo "server did not start"; exit 1; fi
  sleep 0.1
done
if ! (cd tests/e2e && WARREN_HOST=127.0.0.1 WARREN_PORT=$port npm test); then
  echo "--- server log"; cat "$log"; exit 1
fi
if ! WARREN_HOST=127.0.0.1 WARREN_PORT=$port tests/e2e-python/.venv/bin/python -m unittest discover -s tests/e2e-python -v; then
  echo "--- server log"; cat "$log"; exit 1
fi

step "end-to-end: pusher-js reconnecting after 4200, 4201 and 4100 (servers of its own)"
bin="${CARGO_TARGET_DIR:-target}/debug/warren"
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
(cd tests/e2e && WARREN_BIN="$bin" npm run --silent test:reconnect)

step "end-to-end over TLS: pusher-js (forceTLS), the Node SDK (useTLS), the Python SDK (ssl=True), a SIGHUP reload"
bash scripts/e2e-tls.sh
