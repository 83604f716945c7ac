"""Openwall ``popa3d`` (Debian package popa3d) run per connection by :class:`harness.inetd.Inetd`.

popa3d speaks plain POP3 only (USER/PASS, no CAPA, no STLS), authenticates system users
(PAM, i.e. shadow) and serves the mbox ``/var/mail/USER``. It takes no configuration, so
test users are real system accounts: :meth:`Popa3d.add_user` creates one (``useradd`` +
``chpasswd``) with a unique prefix, and :meth:`Popa3d.stop` removes every one it created,
with its mailbox. Needs root.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from harness.dovecot import MailUser
from harness.inetd import InetdPop3
from harness.mailutils import mbox_entry
from harness.system_users import SystemUsers, missing_as_root

#: The Debian package conflicts with dovecot-pop3d and mailutils-pop3d (all "Provide" and
#: "Conflict" pop3-server), so the binary may be an extracted copy: ``apt-get download popa3d;
#: dpkg-deb -x popa3d_*.deb DIR`` (scripts/private-servers.sh does it into .deps/popa3d, used by
#: default) or ``POPA3D_BINARY=DIR/usr/sbin/popa3d``. It also needs the
#: system user ``popa3d`` and the empty directory ``/var/lib/popa3d`` (its privsep chroot).
_UNPACKED = Path(__file__).resolve().parent.parent / ".deps/popa3d/usr/sbin/popa3d"
BINARY = os.environ.get(
    "POPA3D_BINARY", str(_UNPACKED) if _UNPACKED.exists() else "/usr/sbin/popa3d"
)
USER_PREFIX = "ingtpopa"
MAIL_DIR = Path("/var/mail")
_LOCK_TIMEOUT = 30.0


def missing_prerequisites() -> str:
    """Why popa3d cannot run here, or "" if it can."""
    missing = missing_as_root("popa3d", BINARY, "popa3d")
    if not missing and not Path("/var/lib/popa3d").is_dir():
        return "no /var/lib/popa3d (popa3d's privsep chroot)"
    return missing


class Popa3d(InetdPop3):
    """popa3d on 127.0.0.1:``pop3_port`` (plain only; ``pop3s_port`` is the same port)."""

    apop = False

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir).absolute()
        self.log_path = self.workdir / "popa3d.log"
        super().__init__("popa3d", [BINARY], self.log_path)
        self._users = SystemUsers(USER_PREFIX)

    def missing(self) -> str:
        return missing_prerequisites()

    def cleanup(self) -> None:
        """Remove every user created, with their mailboxes."""
        self._users.remove_all(str(MAIL_DIR / "{name}"), str(MAIL_DIR / "{name}.lock"))

    def add_user(self, password: str | None = None) -> MailUser:
        """A new system user ``ingtpopa<hex>`` (no home, no shell) with an empty mailbox."""
        user = self._users.add(password)
        SystemUsers.make_owned(self.mailbox(user.name), user.name, mode=0o600)
        return user

    def mailbox(self, user: str) -> Path:
        return MAIL_DIR / user

    def deliver(self, user: str, raw: bytes) -> None:
        """Append ``raw`` to the user's mbox (``mbox_entry``), under an fcntl lock."""
        with self._dotlock(self.mailbox(user)), self.mailbox(user).open("ab") as handle:
            handle.write(mbox_entry(raw))

    def message_count(self, user: str) -> int:
        with self._dotlock(self.mailbox(user)):
            data = self.mailbox(user).read_bytes()
        return data.startswith(b"From ") + data.count(b"\n\nFrom ")

    @contextlib.contextmanager
    def _dotlock(self, box: Path) -> Iterator[None]:
        """An exclusive fcntl lock on the mbox, as popa3d takes (it uses no dotlock file)."""
        with box.open("rb+") as handle:
            deadline = time.monotonic() + _LOCK_TIMEOUT
            while True:
                try:
                    fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{box} locked for {_LOCK_TIMEOUT:.0f}s") from None
                    time.sleep(0.02)
            try:
                yield
            finally:
                fcntl.lockf(handle, fcntl.LOCK_UN)
