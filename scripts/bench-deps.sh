#!/bin/sh
# Make sure the Debian packages `make bench` needs are installed: getmail6 and fetchmail
# (the peers it measures) and time (/usr/bin/time -v, peak RSS of every client).
# Installing is left to apt-install.sh.
set -eu

missing=""
command -v getmail >/dev/null 2>&1 || missing="$missing getmail6"
command -v fetchmail >/dev/null 2>&1 || missing="$missing fetchmail"
[ -x /usr/bin/time ] || missing="$missing time"
# shellcheck disable=SC2086
exec sh "$(dirname "$0")/apt-install.sh" $missing
