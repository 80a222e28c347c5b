#!/bin/sh
# Install Debian's PostgreSQL server for the cache-import tests (they run a private
# instance as the postgres user; the package's own cluster is not used).
#
# Idempotent: does nothing when a server binary is already there.  Must run as root.
set -eu

if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && getent passwd postgres >/dev/null; then
    echo "install-postgres: PostgreSQL already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-postgres: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

if [ -z "$(apt-cache policy postgresql 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]; then
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

apt-get install -y -q --no-install-recommends postgresql

ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { echo "install-postgres: postgres missing after install" >&2; exit 1; }
echo "install-postgres: installed PostgreSQL"
