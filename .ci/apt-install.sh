#!/bin/sh
# Install Debian packages for the real-server tests: apt-install.sh LABEL PACKAGE...
#
# What the .ci/install-*.sh scripts share. Installs only the packages dpkg does not
# already have; refreshes the package lists only when one of them has no candidate (a
# fresh machine); refuses the packages' own service starts during the install (there is
# no init system here, and the tests run private instances). Must run as root.
set -eu

label=$1
shift
missing=""
for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
        || missing="$missing $package"
done
if [ -z "$missing" ]; then
    echo "$label: already installed: $*"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "$label: must run as root to install$missing" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
for package in $missing; do
    if [ -z "$(apt-cache policy "$package" 2>/dev/null | sed -n 's/^ *Candidate: *//p' \
               | grep -v '(none)')" ]; then
        apt-get update -q
        break
    fi
done

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

# shellcheck disable=SC2086 # one word per package
apt-get install -y -q --no-install-recommends $missing
echo "$label: installed$missing"
