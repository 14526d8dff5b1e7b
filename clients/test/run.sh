#!/usr/bin/env bash
# Browser tests of the pushgate client: unit tests of clients/js/pushgate.js in node, then the
# demo page in headless Chromium (Debian's chromium, driven by playwright-core) against real
# gateway processes started with --demo. Installs what is missing. Bounded in time.
#
#   clients/test/run.sh                    # builds target/release/pushgate first
#   PUSHGATE_BIN=/path/to/pushgate clients/test/run.sh   # uses that binary, no build
set -euo pipefail
clients="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$clients/.." && pwd)"

if [[ ! -x /usr/bin/chromium ]]; then
  echo "installing Debian chromium"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

cd "$clients"
if [[ -f package-lock.json ]]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi

if [[ -z "${PUSHGATE_BIN:-}" ]]; then
  (cd "$repo" && cargo build --release -p pushgate)
  export PUSHGATE_BIN="$repo/target/release/pushgate"
fi

# Each test bounds its own waits; this bounds the whole run should something hang regardless.
timeout --kill-after=10s 300s node --test --test-concurrency=1 test/unit.test.mjs test/e2e.test.mjs
