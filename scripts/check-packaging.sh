#!/usr/bin/env bash
# Packaging checks, run by scripts/test.sh after the debug build:
#  1. the systemd unit (packaging/warren.service): `systemd-analyze verify` says nothing, and
#     `systemd-analyze security` rates its exposure 2.0 or better;
#  2. the .deb (cargo-deb, installed at the pinned version when missing): control data,
#     contents, the conffile, the maintainer scripts; its binary runs and accepts the
#     configuration it ships;
#  3. the container image (Dockerfile), where a Docker daemon answers.
# A step whose tool is missing says so and is skipped, except cargo-deb, which it installs.
#
# The .deb is made from the debug binary the test build already made (`cargo deb --no-build`
# from a scratch target directory holding a copy of it): a release build would add 5 to 8
# minutes on two cores, and every check below is about the package, not about the optimiser.
# A release package is `cargo deb -p warren`.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
bin="${CARGO_TARGET_DIR:-target}/debug/warren"
if [ ! -x "$bin" ]; then cargo build -p warren; fi
bin=$(realpath "$bin")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() { echo "check-packaging: $*" >&2; exit 1; }
has() { grep -q -- "$2" "$1" || fail "$1 lacks: $2"; }

# 1. The unit. `verify` checks that ExecStart's program exists, so a copy runs the binary
#    just built; everything else is the unit as shipped.
check_unit() {
  if command -v systemd-analyze >/dev/null; then
    sed "s#^ExecStart=/usr/bin/warren #ExecStart=$bin #" packaging/warren.service >"$work/warren.service"
    has "$work/warren.service" "^ExecStart=$bin serve"
    out=$(systemd-analyze verify "$work/warren.service" 2>&1) || fail "systemd-analyze verify: $out"
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
    if systemd-analyze --help | grep -q -- --offline; then
      systemd-analyze security --offline=yes --threshold=20 "$work/warren.service" >"$work/security" 2>&1 ||
        { cat "$work/security"; fail "the unit's exposure is above 2.0"; }
      echo "unit: verified; $(grep -o 'Overall exposure level.*' "$work/security")"
    else
      echo "unit: verified (this systemd-analyze has no --offline security check)"
    fi
  else
    echo "unit: systemd-analyze not found, skipping its check (CI has it)"
  fi
}

# 2. The .deb.
check_deb() {
  if ! command -v dpkg-deb >/dev/null; then
    echo "deb: dpkg-deb not found, skipping the package check (CI has it)"
    return
  fi
  if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
  fi
  mkdir -p "$work/target/release"
  cp "$bin" "$work/target/release/warren" # a copy: cargo-deb strips it in place
  CARGO_TARGET_DIR="$work/target" cargo deb -p warren --no-build --strip --fast --quiet \
    --output "$work/warren.deb" >/dev/null
  local deb="$work/warren.deb" exec_start
  dpkg-deb -I "$deb" >"$work/info"
  dpkg-deb -c "$deb" >"$work/contents"
  has "$work/info" "Package: warren$"
  has "$work/info" "Version: $version-1$"
  has "$work/info" "Depends: .*adduser"
  has "$work/info" "Depends: .*libc6"
  for file in ./usr/bin/warren ./usr/lib/systemd/system/warren.service ./etc/warren/warren.toml \
    ./usr/share/doc/warren/warren.example.toml ./usr/share/doc/warren/README.md; do
    has "$work/contents" " $file$"
  done
  has "$work/contents" "^-rwxr-xr-x 0/0 .* ./usr/bin/warren$"
  # The configuration holds secrets: not world-readable, even before postinst gives it to the
  # service's group.
  has "$work/contents" "^-rw-r----- 0/0 .* ./etc/warren/warren.toml$"
  dpkg-deb -e "$deb" "$work/control"
  has "$work/control/conffiles" "^/etc/warren/warren.toml$"
  for script in postinst prerm postrm; do
    [ -x "$work/control/$script" ] || fail "no $script"
    sh -n "$work/control/$script" || fail "$script is not valid sh"
  done
  has "$work/control/postinst" "adduser --system --group"
  has "$work/control/postinst" "dpkg-statoverride --update --add root warren 0640 /etc/warren/warren.toml"
  has "$work/control/postinst" "deb-systemd-helper"
  # Installed, not started: the operator sets real secrets first.
  if grep -q "deb-systemd-invoke start" "$work/control/postinst"; then fail "postinst starts the service"; fi
  dpkg-deb -x "$deb" "$work/root"
  cmp packaging/warren.service "$work/root/usr/lib/systemd/system/warren.service"
  cmp warren.example.toml "$work/root/etc/warren/warren.toml"
  exec_start=$(sed -n 's/^ExecStart=\([^ ]*\) .*/\1/p' packaging/warren.service)
  [ -x "$work/root$exec_start" ] || fail "ExecStart=$exec_start is not in the package"
  "$work/root/usr/bin/warren" --version | grep -q "^warren $version (" || fail "the packaged binary's --version"
  "$work/root/usr/bin/warren" config check "$work/root/etc/warren/warren.toml" >/dev/null
  echo "deb: warren_$(dpkg-deb -f "$deb" Version): control data, contents, scripts and configuration checked"
}

# 3. The container image.
check_image() {
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    local image="warren-check:$$" container status code
    docker build --quiet --build-arg "WARREN_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
      -t "$image" . >/dev/null
    docker run --rm "$image" --version | grep -q "^warren $version (" || fail "the image's --version"
    container=$(docker run -d -e WARREN_APPS__0__SECRET=check-secret "$image")
    status=starting
    for _ in $(seq 1 60); do
      status=$(docker inspect -f '{{.State.Health.Status}}' "$container")
      [ "$status" = starting ] || break
      sleep 1
    done
    docker stop "$container" >/dev/null
    code=$(docker inspect -f '{{.State.ExitCode}}' "$container")
    docker rm "$container" >/dev/null
    docker rmi "$image" >/dev/null
    [ "$status" = healthy ] || fail "the container's health is $status"
    [ "$code" = 0 ] || fail "the container exited with $code on SIGTERM"
    echo "image: built, healthy, stopped cleanly"
  else
    echo "image: no Docker daemon answers (docker info), skipping the image build"
  fi
}

check_unit
check_deb
check_image
