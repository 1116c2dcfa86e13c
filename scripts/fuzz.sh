#!/usr/bin/env bash
# Fuzzes Warren's parsers of outside input with libFuzzer (cargo-fuzz, nightly Rust), and keeps
# the inputs that reach new code in fuzz/corpus/<target>/, which `cargo test` replays on stable
# (crates/warren-fuzz/tests/corpus.rs).
#
# Usage: scripts/fuzz.sh [target...]      (default: every target)
#   RUNS=10000000   executions per target
#   JOBS=1          parallel fuzzing processes per target
#   SANITIZER=none  or address (slower; the code under test is safe Rust, whose memory errors
#                   would be panics anyway)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-10000000}
JOBS=${JOBS:-1}
SANITIZER=${SANITIZER:-none}
parallel=()
[ "$JOBS" -gt 1 ] && parallel=(-jobs="$JOBS" -workers="$JOBS")
all=(frames client_message user_data signature head envelope config)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# Longest input per target: enough for every structure it parses, small enough that memory
# stays bounded and executions fast.
max_len() {
  case "$1" in
    signature) echo 1024 ;;
    user_data | envelope) echo 2048 ;;
    *) echo 4096 ;;
  esac
}

for target in "${targets[@]}"; do
  found=$(mktemp -d)
  echo "== $target: $RUNS runs"
  # New finds go to a scratch folder; the kept corpus seeds the run.
  cargo +nightly fuzz run --fuzz-dir fuzz -s "$SANITIZER" "$target" "$found" "fuzz/corpus/$target" -- \
    -runs="$RUNS" "${parallel[@]}" -max_len="$(max_len "$target")" \
    -rss_limit_mb=1024 -malloc_limit_mb=256 -timeout=5 -print_final_stats=1
  # Only inputs that add coverage join the kept corpus.
  cargo +nightly fuzz run --fuzz-dir fuzz -s "$SANITIZER" "$target" "fuzz/corpus/$target" "$found" -- -merge=1 \
    -max_len="$(max_len "$target")" 2>&1 | grep -E "MERGE-OUTER: [0-9]+ new files" || true
  rm -rf "$found"
done
