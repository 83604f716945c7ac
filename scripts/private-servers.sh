#!/bin/sh
# POP3 servers whose Debian packages conflict with dovecot-pop3d and mailutils-pop3d (they
# all Provide/Conflict "pop3-server") are unpacked into .deps/ instead of installed:
# popa3d for the interoperability tests. Needs root for popa3d's system user and chroot;
# otherwise it says what is missing and the popa3d tests say why they cannot run.
set -eu
cd "$(dirname "$0")/.."
dest=.deps/popa3d
if [ ! -x "$dest/usr/sbin/popa3d" ]; then
    mkdir -p .deps/download
    (
        cd .deps/download
        apt-get download popa3d >/dev/null 2>&1 || {
            [ "$(id -u)" = 0 ] && apt-get update -qq && apt-get download popa3d >/dev/null
        }
    ) || { echo "could not download the popa3d package (apt-get download popa3d)" >&2; exit 0; }
    rm -rf "$dest" && mkdir -p "$dest"
    dpkg-deb -x .deps/download/popa3d_*.deb "$dest"
fi
if [ "$(id -u)" = 0 ]; then
    getent passwd popa3d >/dev/null || adduser --quiet --system --group --no-create-home popa3d
    mkdir -p /var/lib/popa3d
else
    echo "popa3d tests need root (system users); they will say so and not run" >&2
fi
