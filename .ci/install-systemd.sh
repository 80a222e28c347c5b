#!/bin/sh
# Install systemd's tools for the daemon tests: systemd-socket-activate (passes a
# socket the way a .socket unit does) and systemd-analyze (checks the documented
# unit files).  No systemd is started; the tests only run these two programs.
#
# Idempotent: does nothing when both are there.  Must run as root on Debian.
set -eu

if command -v systemd-socket-activate >/dev/null 2>&1 && command -v systemd-analyze >/dev/null 2>&1; then
    echo "install-systemd: systemd-socket-activate and systemd-analyze already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-systemd: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

if [ -z "$(apt-cache policy systemd 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]; then
    apt-get update -q
fi

apt-get install -y -q --no-install-recommends systemd

command -v systemd-socket-activate >/dev/null 2>&1 || { echo "install-systemd: systemd-socket-activate missing" >&2; exit 1; }
echo "install-systemd: installed systemd's tools"
