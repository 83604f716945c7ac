"""Solid POP3 (Debian package solid-pop3d) run per connection by :class:`harness.inetd.Inetd`.

solid-pop3d speaks plain POP3 only (no CAPA, no STLS, no TLS port): USER/PASS against PAM
(system users, so test users are throw-away system accounts, see
:class:`harness.system_users.SystemUsers`) and APOP with a per-user secret in ``~/.spop3d``.
It serves a Maildir or an mbox named by a private config file (``-f``); the package's
``/etc/spop3d.conf`` is never read. Quirks, measured on 0.15-31:

- RETR is the stored bytes with every LF made CRLF, a CR before it or not (see
  :func:`as_solid_pop3`); a Maildir file must end in LF (see :func:`harness.maildrop.maildir_file`);
- mbox: ``>From `` lines stay quoted as stored, and the blank line that ends an mbox entry
  is served as part of the message;
- UIDL is a hex MD5 digest; the UIDL response's first line is ``+OK `` with nothing after.

The package conflicts with dovecot-pop3d and mailutils-pop3d, so it is unpacked into
``.deps/solid-pop3d`` by scripts/private-servers.sh (with liblockfile1, which it links and
which is not installed by default). It needs root and the system user ``spop3d``.
"""

from __future__ import annotations

from pathlib import Path

from harness.dovecot import MailUser
from harness.inetd import InetdPop3
from harness.maildrop import deliver_maildir, maildir_count, maildir_file, make_maildir
from harness.mailutils import mbox_entry
from harness.system_users import SystemUsers, missing_as_root

DEPS = Path(__file__).resolve().parent.parent / ".deps/solid-pop3d"
BINARY = DEPS / "usr/sbin/solid-pop3d"
USER_PREFIX = "ingtsolid"
_CONFIG = """\
/* solid-pop3d for ingest's tests, written by harness/solid_pop3d.py */
<Global>
\tMailDropName\t"{mail}/%s/{drop}"
\tMailDropType\t{kind}
\tLogStatistics\tno
\tAddBulletins\tno
\tAllowAPOP\tyes
\tAPOPServerName\tlocalhost
\tAutoLogoutTime\t5m
</Global>
"""


def as_solid_pop3(raw: bytes, kind: str) -> bytes:
    """What RETR returns (dot-unstuffed) when solid-pop3d serves ``raw`` delivered by
    :meth:`SolidPop3d.deliver`: the stored message (the Maildir file, or the mbox entry
    after its ``From `` line, quoting and separating blank line included) with every LF
    made CRLF, even one after a CR (so a stored ``CR LF`` comes out as ``CR CR LF``)."""
    stored = maildir_file(raw) if kind == "maildir" else mbox_entry(raw).split(b"\n", 1)[1]
    return stored.replace(b"\n", b"\r\n")


def missing_prerequisites() -> str:
    """Why solid-pop3d cannot run here, or "" if it can."""
    return missing_as_root("solid-pop3d", BINARY, "spop3d")


class SolidPop3d(InetdPop3):
    """solid-pop3d on 127.0.0.1:``pop3_port`` serving ``kind`` maildrops (maildir|mailbox)."""

    apop = True

    def __init__(self, workdir: Path, kind: str = "maildir") -> None:
        self.workdir = Path(workdir).absolute()
        self.kind = kind
        self.mail_root = self.workdir / "mail"
        self.conf_path = self.workdir / "spop3d.conf"
        self.log_path = self.workdir / "solid-pop3d.log"
        libs = DEPS / "usr/lib/x86_64-linux-gnu"
        argv = ["env", f"LD_LIBRARY_PATH={libs}", str(BINARY), "-f", str(self.conf_path)]
        super().__init__("solid-pop3d", argv, self.log_path)
        self._users = SystemUsers(USER_PREFIX, home=str(self.mail_root / "{name}"))

    def missing(self) -> str:
        return missing_prerequisites()

    def prepare(self) -> None:
        self.mail_root.mkdir(parents=True, exist_ok=True)
        for path in (self.workdir, self.mail_root):
            path.chmod(0o755)  # sessions run as the user, below workdir
        drop = "Maildir" if self.kind == "maildir" else "mbox"
        self.conf_path.write_text(_CONFIG.format(mail=self.mail_root, drop=drop, kind=self.kind))

    def cleanup(self) -> None:
        """Remove every user created, with their maildrops."""
        self._users.remove_all(str(self.mail_root / "{name}"))

    def add_user(self, password: str | None = None, apop_secret: str | None = None) -> MailUser:
        """A new system user with an empty maildrop; with ``apop_secret``, the APOP secret in
        ``~/.spop3d`` (as ``pop_auth`` writes it: each byte inverted, in hex)."""
        user = self._users.add(password)
        home = self.mail_root / user.name
        if self.kind == "maildir":
            make_maildir(home / "Maildir", user.name)
        else:
            SystemUsers.make_owned(home / "mbox", user.name, mode=0o600)
        if apop_secret:
            encoded = bytes(~b & 0xFF for b in apop_secret.encode()).hex()
            dot = SystemUsers.make_owned(home / ".spop3d", user.name, mode=0o600)
            dot.write_text(f"APOPSecret {encoded}\n")
        return user

    def deliver(self, user: str, raw: bytes) -> None:
        """Add ``raw`` to the maildrop: a Maildir file in ``new/``, or an mbox entry."""
        home = self.mail_root / user
        if self.kind != "maildir":
            with (home / "mbox").open("ab") as handle:
                handle.write(mbox_entry(raw))
            return
        deliver_maildir(home / "Maildir", raw, user)

    def message_count(self, user: str) -> int:
        home = self.mail_root / user
        if self.kind == "maildir":
            return maildir_count(home / "Maildir")
        data = (home / "mbox").read_bytes()
        return data.startswith(b"From ") + data.count(b"\n\nFrom ")
