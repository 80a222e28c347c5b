#!/bin/sh
# Install Debian's postfix for the real-Postfix tests, without prompts.
#
# Idempotent: does nothing when postfix and postmap are already installed.
# Must run as root on a Debian-like system. The package's own service start may
# be refused (no init system in containers); the tests run private instances,
# so that is harmless.
set -eu

if command -v postfix >/dev/null 2>&1 && command -v postmap >/dev/null 2>&1 \
    && dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q 'install ok installed'; then
    echo "install-postfix: postfix already installed: $(postconf -d -h mail_version 2>/dev/null || echo '?')"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-postfix: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# "No configuration" keeps the package from writing a mail system setup of its
# own; the tests configure private instances.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

# Refresh the package lists only when apt cannot find the package (a fresh machine).
if ! apt-cache show postfix >/dev/null 2>&1 \
    || [ -z "$(apt-cache policy postfix 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]; then
    apt-get update -q
fi

# The package's postinst tries to start the service; in containers without an
# init system that may fail, which a policy-rc.d refusal turns into a clean skip.
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

apt-get install -y -q --no-install-recommends postfix

command -v postfix >/dev/null 2>&1 || { echo "install-postfix: postfix missing after install" >&2; exit 1; }
command -v postmap >/dev/null 2>&1 || { echo "install-postfix: postmap missing after install" >&2; exit 1; }
echo "install-postfix: installed postfix $(postconf -d -h mail_version 2>/dev/null || echo '?')"
