#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the portal's browser tests
# (services/portal/tests/browser): Playwright drives it; no browser is downloaded. Idempotent
# and quiet: does nothing when it is there; otherwise installs Debian's package.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "ensure-chromium: /usr/bin/chromium missing and not root; install Debian's chromium by hand" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium >/dev/null
