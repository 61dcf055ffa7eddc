#!/usr/bin/env bash
# Installs Debian's headless browser for the web example's browser test (chromium and
# its chromedriver) when they are missing. The test itself fails without them.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "chromium/chromedriver missing: run 'apt-get install chromium chromium-driver' as root" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
