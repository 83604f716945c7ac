"""mailfront's POP3 front end (Debian mailfront + cvm) run per connection by our Inetd.

``pop3front-auth CVM pop3front-maildir Maildir``, as tcpserver would start it: the login is
checked by the credential validation module ``cvm-pwfile`` against a private password
file (``CVM_PWFILE_PATH``), so no system account is created; sessions run as Debian's
``mail`` user, whose uid the file names. Plain POP3 only (Debian has no ucspi-ssl for its
TLS), USER/PASS, CAPA (``PIPELINING TOP UIDL USER``). Quirks measured on 2.12:

- UIDL is the Maildir file name (without ``:2,`` flags);
- RETR sends the file with LF made CRLF and then one more CRLF before the final dot, so a
  client gets the message plus an empty line (:func:`as_mailfront_pop3`); TOP likewise.

mailfront, libbg2, libcvm1 and cvm are not installed by default; scripts/private-servers.sh
unpacks them into ``.deps/mailfront``.
"""

from __future__ import annotations

import os
import pwd
import secrets
from pathlib import Path

from harness.dovecot import MailUser
from harness.inetd import InetdPop3
from harness.maildrop import deliver_maildir, maildir_count, maildir_file, make_maildir
from harness.system_users import missing_as_root

DEPS = Path(__file__).resolve().parent.parent / ".deps/mailfront"
OWNER = "mail"


def missing_prerequisites() -> str:
    """Why mailfront cannot run here, or "" if it can."""
    return missing_as_root("mailfront", DEPS / "usr/sbin/pop3front-auth") or missing_as_root(
        "mailfront", DEPS / "usr/bin/cvm-pwfile"
    )


def as_mailfront_pop3(raw: bytes) -> bytes:
    """What RETR returns (dot-unstuffed) for ``raw`` delivered by :meth:`Mailfront.deliver`."""
    return maildir_file(raw).replace(b"\n", b"\r\n") + b"\r\n"


class Mailfront(InetdPop3):
    """pop3front on 127.0.0.1:``pop3_port`` (plain only)."""

    apop = False

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir).absolute()
        self.home_root = self.workdir / "home"
        self.pwfile = self.workdir / "pwfile"
        self.log_path = self.workdir / "mailfront.log"
        libs = f"{DEPS}/usr/lib/x86_64-linux-gnu:{DEPS}/usr/lib"
        argv = [
            "env", f"LD_LIBRARY_PATH={libs}", f"CVM_PWFILE_PATH={self.pwfile}",
            "TCPLOCALIP=127.0.0.1", "TCPREMOTEIP=127.0.0.1",
            str(DEPS / "usr/sbin/pop3front-auth"), str(DEPS / "usr/bin/cvm-pwfile"),
            str(DEPS / "usr/sbin/pop3front-maildir"), "Maildir",
        ]  # fmt: skip
        super().__init__("mailfront pop3front", argv, self.log_path)

    def missing(self) -> str:
        return missing_prerequisites()

    def prepare(self) -> None:
        self.home_root.mkdir(parents=True, exist_ok=True)
        for path in (self.workdir, self.home_root):
            path.chmod(0o755)
        self.pwfile.touch(mode=0o600)

    def add_user(self, password: str | None = None) -> MailUser:
        """A password-file user ``u<hex>`` whose home (owned by ``mail``) holds a Maildir."""
        name, password = f"u{secrets.token_hex(6)}", password or secrets.token_urlsafe(12)
        home = self.home_root / name
        home.mkdir()
        make_maildir(home / "Maildir", OWNER)
        owner = pwd.getpwnam(OWNER)
        os.chown(home, owner.pw_uid, owner.pw_gid)
        with self.pwfile.open("a") as handle:
            handle.write(
                f"{name}:{password}:{owner.pw_uid}:{owner.pw_gid}:test:{home}:/bin/false\n"
            )
        return MailUser(name, password)

    def deliver(self, user: str, raw: bytes) -> None:
        deliver_maildir(self.home_root / user / "Maildir", raw, OWNER)

    def message_count(self, user: str) -> int:
        return maildir_count(self.home_root / user / "Maildir")
