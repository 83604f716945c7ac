#!/bin/sh
# POP3 servers whose Debian packages conflict with dovecot-pop3d and mailutils-pop3d (they
# all Provide/Conflict "pop3-server") are never installed: their .debs are downloaded with
# `apt-get download` and unpacked with `dpkg-deb -x` into .deps/NAME/, with the libraries
# they link that a default system lacks. Used by the interoperability tests (harness/*.py):
#   popa3d       .deps/popa3d
#   solid-pop3d  .deps/solid-pop3d   (+ liblockfile1)
#   courier-pop  .deps/courier       (+ courier-base, courier-authlib, courier-authdaemon,
#                                     libcourier-unicode4 libidn12 libltdl7)
#   cyrus-pop3d  .deps/cyrus         (+ cyrus-common, the libraries it links that are not
#                                     always installed: libical3 libpcre3 libxapian30 libwrap0;
#                                     sasl2-bin for saslpasswd2)
#   mailfront    .deps/mailfront     (+ libbg2, libcvm1, cvm for cvm-pwfile)
# Idempotent. The servers also need system users and directories, which only root can
# make; without root this says so and the tests that need them skip, saying why.
set -eu
cd "$(dirname "$0")/.."
updated=""

download() { # download PKG...: the .debs into .deps/download (apt-get update once if needed)
    (
        cd .deps/download
        apt-get download "$@" >/dev/null 2>&1 || {
            [ "$(id -u)" = 0 ] && [ -z "$updated" ] && apt-get update -qq &&
                apt-get download "$@" >/dev/null
        }
    )
}

unpack() { # unpack DIR MARKER PKG...: unless DIR/MARKER exists, unpack every PKG into DIR
    dir=".deps/$1" marker="$2"
    shift 2
    [ -e "$dir/$marker" ] && return 0
    mkdir -p .deps/download
    if ! download "$@"; then
        echo "could not download: $* (apt-get download)" >&2
        return 0
    fi
    updated=1
    rm -rf "$dir" && mkdir -p "$dir"
    for pkg in "$@"; do
        dpkg-deb -x "$(ls -t .deps/download/"${pkg}"_*.deb | head -n 1)" "$dir"
    done
}

unpack popa3d usr/sbin/popa3d popa3d
unpack solid-pop3d usr/sbin/solid-pop3d solid-pop3d liblockfile1
unpack courier usr/lib/courier/courier/courierpop3login \
    courier-pop courier-base courier-authlib courier-authdaemon libcourier-unicode4 libidn12 libltdl7
unpack cyrus usr/lib/cyrus/bin/pop3d \
    cyrus-pop3d cyrus-common libical3 libpcre3 libxapian30 libwrap0 sasl2-bin
unpack mailfront usr/sbin/pop3front-auth mailfront libbg2 libcvm1 cvm

if [ "$(id -u)" != 0 ]; then
    echo "the popa3d, solid-pop3d, courier, cyrus and mailfront tests need root (system users); they will say so and not run" >&2
    exit 0
fi
getent passwd popa3d >/dev/null || adduser --quiet --system --group --no-create-home popa3d
mkdir -p /var/lib/popa3d
getent passwd spop3d >/dev/null ||
    adduser --quiet --system --no-create-home --home /var/lib/solid-pop3d --ingroup mail spop3d
getent passwd courier >/dev/null ||
    adduser --quiet --system --group --no-create-home --home /var/lib/courier courier
getent passwd cyrus >/dev/null ||
    adduser --quiet --system --ingroup mail --no-create-home --home /var/lib/cyrus cyrus
