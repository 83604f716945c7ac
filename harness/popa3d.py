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
import pwd
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from harness.dovecot import MailUser, pop3_greets
from harness.inetd import Inetd
from harness.mailutils import mbox_entry
from harness.process import ServerStartError

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
    if os.geteuid() != 0:
        return "popa3d tests need root (system users, /var/mail)"
    if not os.access(BINARY, os.X_OK):
        return f"{BINARY} not found (set POPA3D_BINARY to an extracted copy)"
    try:
        pwd.getpwnam("popa3d")
    except KeyError:
        return "no system user popa3d (adduser --system --group popa3d)"
    if not Path("/var/lib/popa3d").is_dir():
        return "no /var/lib/popa3d (popa3d's privsep chroot)"
    return ""


class Popa3d:
    """popa3d on 127.0.0.1:``pop3_port`` (plain only; ``pop3s_port`` is the same port)."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir).absolute()
        self.log_path = self.workdir / "popa3d.log"
        self.ca_file: Path | None = None  # no TLS
        self._inetd = Inetd([BINARY], self.log_path)
        self._users: list[str] = []

    @property
    def pop3_port(self) -> int:
        return self._inetd.port

    @property
    def pop3s_port(self) -> int:
        return self._inetd.port

    def start(self) -> Popa3d:
        missing = missing_prerequisites()
        if missing:
            raise ServerStartError(missing)
        self._inetd.start()
        deadline = time.monotonic() + 10
        while not pop3_greets(self.host, self.pop3_port, timeout=2):
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(f"popa3d on port {self.pop3_port} sends no greeting")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        """Stop the accept loop and sessions, then remove every user created. Idempotent."""
        self._inetd.stop()
        for name in self._users:
            subprocess.run(["userdel", "--force", name], capture_output=True, check=False)
            for path in (self.mailbox(name), self.mailbox(name).with_suffix(".lock")):
                path.unlink(missing_ok=True)
        self._users = []

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until every session has ended (popa3d rewrites the mbox at QUIT)."""
        self._inetd.wait_idle(timeout)

    def add_user(self, password: str | None = None) -> MailUser:
        """A new system user ``ingtpopa<hex>`` (no home, no shell) with an empty mailbox."""
        name = f"{USER_PREFIX}{secrets.token_hex(4)}"
        password = password or secrets.token_urlsafe(12)
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        self._users.append(name)
        subprocess.run(
            ["chpasswd"], input=f"{name}:{password}\n".encode(), check=True, capture_output=True
        )
        box = self.mailbox(name)
        box.touch(mode=0o600)
        entry = pwd.getpwnam(name)
        os.chown(box, entry.pw_uid, entry.pw_gid)
        return MailUser(name, password)

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

    def __enter__(self) -> Popa3d:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
