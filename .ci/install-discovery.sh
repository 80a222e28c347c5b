#!/bin/sh
# Install the Debian packages the discovery and store tests run for real:
# nsd (authoritative DNS), unbound (validating resolver), ldnsutils (zone
# signing) and redis-server.
#
# Idempotent: does nothing when every binary is already there.  Must run as
# root on a Debian-like system.  The packages' own services are not used (the
# tests run private instances), so a refused service start is harmless.
set -eu

have_all() {
    for binary in nsd unbound ldns-keygen ldns-signzone redis-server; do
        command -v "$binary" >/dev/null 2>&1 || [ -x "/usr/sbin/$binary" ] || return 1
    done
}

if have_all; then
    echo "install-discovery: nsd, unbound, ldnsutils and redis-server already installed"
    exit 0
fi

sh "$(dirname "$0")/apt-install.sh" install-discovery nsd unbound ldnsutils redis-server

have_all || { echo "install-discovery: a binary is missing after install" >&2; exit 1; }
echo "install-discovery: installed nsd, unbound, ldnsutils and redis-server"
