#!/bin/sh
# Make sure the Debian packages the tests and the demo need are installed:
# redis-server (private Redis instances), dovecot-pop3d (private Dovecot instances) and
# mailutils-pop3d (private GNU Mailutils pop3d instances, the second POP3 server of the
# interoperability tests).
# As root: installs what is missing with apt-get, without starting the system services.
# Otherwise: says exactly what to install and fails.
set -eu

missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
[ -x /usr/sbin/dovecot ] || command -v dovecot >/dev/null 2>&1 || missing="$missing dovecot-pop3d"
# Other packages ship a "pop3d" too: only GNU Mailutils' one will do.
/usr/sbin/pop3d --version 2>/dev/null | grep -q "GNU Mailutils" || missing="$missing mailutils-pop3d"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages:$missing" >&2
    echo "install them with: sudo apt-get install -y$missing" >&2
    exit 1
fi

echo "installing Debian packages:$missing" >&2
# Keep the packages' init scripts from starting system-wide services on standard ports:
# the tests start their own private instances on free ports.
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
fi
trap '[ -n "$made_policy" ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
