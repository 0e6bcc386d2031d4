#!/usr/bin/env bash
# Make sure `kubectl kustomize` is on PATH for the deploy tests (tests/deploy). Idempotent and
# quiet: does nothing when a kubectl with kustomize answers; otherwise installs Debian's
# kubernetes-client. Debian's kubectl 1.20 embeds kustomize v2, which predates kustomize
# components: the kustomize tests then skip with that reason (the chart checks still run).
set -euo pipefail

if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "ensure-kubectl: kubectl missing and not root; install kubernetes-client (Debian) by hand" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
