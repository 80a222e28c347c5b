#!/bin/sh
# Install Debian's openssl command for the tests that make a CA with
# `openssl req -x509` defaults (tests/certs_support.py).
#
# Idempotent: does nothing when the command is already there.
set -eu

if command -v openssl >/dev/null 2>&1; then
    echo "install-openssl: $(openssl version)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-openssl: must run as root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show openssl >/dev/null 2>&1; then
    apt-get update -q
fi
apt-get install -y -q --no-install-recommends openssl
openssl version
