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

sh "$(dirname "$0")/apt-install.sh" install-postgres postgresql

ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { echo "install-postgres: postgres missing after install" >&2; exit 1; }
echo "install-postgres: installed PostgreSQL"
