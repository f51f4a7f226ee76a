#!/usr/bin/env bash
# Runs the web UI browser test: real coordinator + two nodes, driven through
# the pages in headless Debian Chromium. Non-interactive; installs what is
# missing. Build the binary first (cargo build --release), or set
# P2PSHARE_BIN to it.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  apt-get install -y -qq chromium </dev/null
fi

if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund </dev/null
fi

exec node --test ui.test.mjs </dev/null
