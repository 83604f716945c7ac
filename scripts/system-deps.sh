#!/bin/sh
# Make sure the Debian packages the tests and the demo need are installed:
# redis-server (private Redis instances), dovecot-pop3d (private Dovecot instances) and
# mailutils-pop3d (private GNU Mailutils pop3d instances, the second POP3 server of the
# interoperability tests). Installing is left to apt-install.sh.
set -eu

missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
[ -x /usr/sbin/dovecot ] || command -v dovecot >/dev/null 2>&1 || missing="$missing dovecot-pop3d"
# Other packages ship a "pop3d" too: only GNU Mailutils' one will do.
/usr/sbin/pop3d --version 2>/dev/null | grep -q "GNU Mailutils" || missing="$missing mailutils-pop3d"
# shellcheck disable=SC2086
exec sh "$(dirname "$0")/apt-install.sh" $missing
