#!/bin/sh
# Install every Debian package the tests and checks use, with one apt-get install:
#
#   postfix                      the real-Postfix tests (receiving, sending, postmap, postconf)
#   postfix-pcre                 postmap reading the exported pcre tables
#   openssl                      the CA made with `openssl req -x509` defaults (certs_support.py)
#   nsd unbound ldnsutils        signed DNS on loopback (discovery, DANE, TLS-RPT)
#   redis-server                 the shared discovery store
#   chromium                     the documentation test in a real headless browser
#   systemd                      systemd-socket-activate and systemd-analyze (daemon tests)
#   postgresql                   the cache-import tests' private PostgreSQL
#   iproute2 util-linux mount    the end-to-end daemon test's private namespaces
#
# Idempotent: apt-install.sh installs only what dpkg does not already have and refreshes
# the package lists only when a package has no candidate (a fresh machine).  The
# install-*.sh scripts beside this one install one suite's share each, for a developer
# who wants only that; this script is what CI runs.  Must run as root.
set -eu
here=$(dirname "$0")

# "No configuration": the package writes no mail system setup of its own (the tests run
# private instances); without the answer the install would prompt.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

sh "$here/apt-install.sh" install-debian \
    postfix postfix-pcre openssl nsd unbound ldnsutils redis-server chromium systemd postgresql \
    iproute2 util-linux mount

# Debian's "No configuration" install leaves no /etc/postfix/main.cf, and postconf (which
# serve asks for the Postfix version and the settings it checks) fails without one. An
# empty main.cf means Postfix's built-in defaults; no Postfix is started from it.
[ -e /etc/postfix/main.cf ] || : > /etc/postfix/main.cf

missing=""
for binary in postfix postmap postconf openssl nsd unbound ldns-keygen ldns-signzone \
        redis-server chromium systemd-socket-activate systemd-analyze ip unshare mount; do
    command -v "$binary" >/dev/null 2>&1 || [ -x "/usr/sbin/$binary" ] || [ -x "/sbin/$binary" ] \
        || missing="$missing $binary"
done
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$missing postgres"
if [ -n "$missing" ]; then
    echo "install-debian: missing after install:$missing" >&2
    exit 1
fi
echo "install-debian: every package is there"
