#!/bin/sh
# Install Debian's postfix (and its pcre map type) for the real-Postfix tests, without prompts.
#
# Idempotent: does nothing when postfix and postmap are already installed.
# Must run as root on a Debian-like system. The package's own service start may
# be refused (no init system in containers); the tests run private instances,
# so that is harmless.
set -eu

if command -v postfix >/dev/null 2>&1 && command -v postmap >/dev/null 2>&1 \
    && dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q 'install ok installed' \
    && dpkg-query -W -f='${Status}' postfix-pcre 2>/dev/null | grep -q 'install ok installed'; then
    echo "install-postfix: postfix already installed: $(postconf -d -h mail_version 2>/dev/null || echo '?')"
    [ -e /etc/postfix/main.cf ] || : > /etc/postfix/main.cf  # see the end of this script
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-postfix: must run as root" >&2
    exit 1
fi

# "No configuration" keeps the package from writing a mail system setup of its
# own; the tests configure private instances.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

sh "$(dirname "$0")/apt-install.sh" install-postfix postfix postfix-pcre

command -v postfix >/dev/null 2>&1 || { echo "install-postfix: postfix missing after install" >&2; exit 1; }
command -v postmap >/dev/null 2>&1 || { echo "install-postfix: postmap missing after install" >&2; exit 1; }
echo "install-postfix: installed postfix $(postconf -d -h mail_version 2>/dev/null || echo '?')"

# "No configuration" leaves no main.cf, and postconf fails without one; an empty main.cf
# means Postfix's built-in defaults (no Postfix is started from it).
[ -e /etc/postfix/main.cf ] || : > /etc/postfix/main.cf
