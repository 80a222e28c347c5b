#!/bin/sh
# Install the Debian packages the end-to-end daemon test needs beside Postfix, NSD and
# Unbound (install-postfix.sh, install-discovery.sh): iproute2 for `ip link set lo up` in
# the test's private network namespace, util-linux for `unshare` and `mount`.
#
# Idempotent: apt-install.sh installs only what dpkg does not already have.
set -eu

sh "$(dirname "$0")/apt-install.sh" install-e2e iproute2 util-linux mount

for binary in ip unshare mount; do
    command -v "$binary" >/dev/null 2>&1 || [ -x "/usr/sbin/$binary" ] || [ -x "/sbin/$binary" ] \
        || { echo "install-e2e: $binary missing after install" >&2; exit 1; }
done
echo "install-e2e: ip, unshare and mount are there"
