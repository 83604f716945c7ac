#!/bin/sh
# Install the Debian packages named as arguments (those found missing by system-deps.sh or
# bench-deps.sh). As root: with apt-get, without starting any system service (their init
# scripts would start daemons on standard ports; we run private instances on free ports).
# Otherwise: says exactly what to install and fails.
set -eu
[ "$#" -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: $*" >&2
    echo "install them with: sudo apt-get install -y $*" >&2
    exit 1
fi

echo "installing Debian packages: $*" >&2
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
fi
trap '[ -n "$made_policy" ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
