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

if [ "$(id -u)" -ne 0 ]; then
    echo "install-discovery: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

if [ -z "$(apt-cache policy nsd 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]; then
    apt-get update -q
fi

# Refuse service starts during the install (no init system in containers).
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
}
trap cleanup EXIT

apt-get install -y -q --no-install-recommends nsd unbound ldnsutils redis-server

have_all || { echo "install-discovery: a binary is missing after install" >&2; exit 1; }
echo "install-discovery: installed nsd, unbound, ldnsutils and redis-server"
