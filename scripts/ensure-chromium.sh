#!/usr/bin/env bash
# Debian's chromium for the console test (tests/console), installed when missing. Needs root
# (or sudo) the first time. Usage: scripts/ensure-chromium.sh
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
