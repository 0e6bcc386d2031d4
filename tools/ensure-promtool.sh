#!/usr/bin/env bash
# Make sure `promtool` is on PATH for the alert rule tests (tests/deploy/test_alerts.py).
# Idempotent and quiet: does nothing when promtool answers; otherwise installs Debian's
# `prometheus` package (which ships promtool) without starting anything. Without it the
# alert tests skip with that reason.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "ensure-promtool: promtool missing and not root; install prometheus (Debian) by hand" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# No service is started by the package in a container without an init; policy-rc.d makes
# sure of it elsewhere too, and is removed again.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
