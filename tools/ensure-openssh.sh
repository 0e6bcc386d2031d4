#!/usr/bin/env bash
# Make sure OpenSSH's `sftp` client and `sftp-server` are there for the intake tests (real
# `sftp -b` against our SFTP server) and bench/bench_sftp.py (OpenSSH's own sftp-server as
# the baseline). Idempotent and quiet: installs Debian's openssh-client and
# openssh-sftp-server only when one is missing.
set -euo pipefail

have_server() {
    for p in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/libexec/sftp-server; do
        [ -x "$p" ] && return 0
    done
    return 1
}
if command -v sftp >/dev/null 2>&1 && have_server; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "ensure-openssh: sftp or sftp-server missing and not root; install openssh-client and openssh-sftp-server (Debian) by hand" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends openssh-client openssh-sftp-server >/dev/null
