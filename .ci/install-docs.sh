#!/bin/sh
# Install Debian's chromium for the documentation test in a real headless browser.
#
# Idempotent: does nothing when chromium is already installed. Must run as root on a
# Debian-like system. The test drives the browser over the DevTools protocol on a pipe,
# so no browser download and no driver package are needed.
set -eu

if command -v chromium >/dev/null 2>&1 \
    && dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'install ok installed'; then
    echo "install-docs: chromium already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-docs: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# Refresh the package lists only when apt cannot find the package (a fresh machine).
if ! apt-cache show chromium >/dev/null 2>&1 \
    || [ -z "$(apt-cache policy chromium 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]; then
    apt-get update -q
fi

apt-get install -y -q --no-install-recommends chromium

command -v chromium >/dev/null 2>&1 || { echo "install-docs: chromium missing after install" >&2; exit 1; }
echo "install-docs: installed chromium"
