"""A private GNU Mailutils ``pop3d`` (own config, loopback ports, mbox, virtual-domain users).

Never reads ``/etc/mailutils.conf``: ``pop3d --config-file=WORKDIR/pop3d.conf`` (which implies
``--no-config``) runs in daemon mode in the foreground as our child, stopped by its PID.
Users live in a private virtual-domain password file (``virtdomain``, crypt(3) hashes), so
no system account is created: logins are ``NAME@mailutils.test``. Each user's mailbox is
the mbox ``WORKDIR/mail/NAME/INBOX``. As root, sessions run as Debian's ``mail`` user, so
``workdir`` and its parents must be traversable by it (a ``tempfile.mkdtemp()`` directory
is, a pytest ``tmp_path`` is not).

What RETR returns is not ``harness.as_pop3(raw)``: see :func:`as_mailutils_pop3`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import pwd
import re
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from harness.dovecot import MailUser, pop3_greets
from harness.ports import free_port
from harness.process import (
    Managed,
    ServerStartError,
    descendants,
    log_tail,
    processes_titled,
    retry_on_port_race,
    spawn,
    stop_process,
    terminate_all,
    wait_ready,
)
from harness.tls import make_server_tls

DOMAIN = "mailutils.test"
_LOCK_TIMEOUT = 30.0
_FROM_LINE = re.compile(rb"(?m)^(>*From )")
_CONFIG = """\
# GNU Mailutils pop3d for ingest's tests, written by harness/mailutils.py.
mode daemon;
foreground yes;
pidfile "{workdir}/pop3d.pid";
max-children 64;
logging {{ syslog no; print-severity yes; }};
tcp-wrappers {{ enable no; }};
apop-database-file "{workdir}/apop.db";
# deliver() takes the same dotlock as root; a session (as mail) must not call it stale.
locking {{ type dotlock; pid-check no; }};
auth {{ authorization virtdomain; authentication generic; }};
virtdomain {{ passwd-dir "{workdir}/domains"; }};
tls {{ ssl-certificate-file "{tls}/cert.pem"; ssl-key-file "{tls}/key.pem"; }};
server {host}:{pop3_port} {{ tls-mode ondemand; }};
server {host}:{pop3s_port} {{ tls-mode connection; }};
"""


def _crypt(password: str) -> str:
    """A SHA-512 crypt(3) hash, from libcrypt (a dependency of pop3d itself)."""
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt.restype = ctypes.c_char_p
    salt = lib.crypt_gensalt(b"$6$", 0, None, 0)
    hashed = lib.crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$6$"):
        raise RuntimeError("libcrypt could not make a SHA-512 hash")
    return str(hashed.decode())


def mbox_entry(raw: bytes) -> bytes:
    """``raw`` as one mbox message: a ``From `` line, mboxrd quoting, a blank separator line.

    CRLF is stored as LF (pop3d turns every LF into CRLF, so a stored CRLF would come back
    as CR CR LF); every line matching ``>*From `` gets one more ``>``, which pop3d removes
    again in the body (not in the header: see :func:`as_mailutils_pop3`). A message without
    an empty line gets one to end its header: pop3d takes a ``From `` line right after the
    header's end for body text, so the separator line alone would not part two messages.
    """
    text = _FROM_LINE.sub(rb">\1", raw.replace(b"\r\n", b"\n"))
    if not text.endswith(b"\n"):
        text += b"\n"
    if not text.startswith(b"\n") and b"\n\n" not in text:
        text += b"\n"
    stamp = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime()).encode()
    return b"From ingest-test@localhost " + stamp + b"\n" + text + b"\n"


def as_mailutils_pop3(raw: bytes, uidl: str) -> bytes:
    """What a POP3 client gets (after dot-unstuffing) when Mailutils 3.15 serves ``raw``.

    Measured against ``pop3d`` 3.15 serving an mbox written by :meth:`MailutilsPop3d.deliver`,
    in the first session that opens it. Unlike Dovecot, pop3d does not send the stored
    header block but re-renders the header fields it parsed from it:

    - the header block ends at the first empty line; without one, the whole message is
      header and the body is empty;
    - each field is ``name: value``: spaces and tabs before the colon and after it are
      dropped and exactly one space put after it; continuation lines are kept as they are;
    - parsing stops at the first line that is neither a field (no colon) nor a
      continuation, or that starts with a blank: **that line and every later header line
      are lost** (a leading ``From `` envelope line, stored quoted as ``>From ``, counts as a
      field if it holds a colon);
    - ``X-UIDL: UIDL`` is appended as the last field unless the message has an ``X-UIDL``
      field already (whose value then *is* the UIDL); then an empty line;
    - the body keeps its bytes; its line ends come out as :func:`harness.as_pop3` makes
      them (CRLF, a bare LF made CRLF, a CRLF added to a last line without one), and an
      empty body stays empty. pop3d dot-stuffs every line, the first one included.

    LIST (and STAT) count these bytes without the added ``X-UIDL`` line.

    Later sessions differ once pop3d has rewritten the mbox (at QUIT, even after RSET, and
    when a client drops the connection): it replaces the message's ``Status``, ``X-UID``
    and ``X-IMAPbase`` fields by its own and sends them too, and LIST sizes change.
    """
    lf = raw.replace(b"\r\n", b"\n")
    end = 0 if lf.startswith(b"\n") else lf.find(b"\n\n") + 1 or len(lf)
    fields = _header_fields(_FROM_LINE.sub(rb">\1", lf[:end]))
    if not any(name.lower() == b"x-uidl" for name, _ in fields):
        fields.append((b"X-UIDL", uidl.encode()))
    head = b"".join(name + b": " + value + b"\n" for name, value in fields) + b"\n"
    body = lf[end + 1 :]
    if body and not body.endswith(b"\n"):
        body += b"\n"
    return (head + body).replace(b"\n", b"\r\n")


def _header_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """Header fields as pop3d 3.15 parses them (libmailutils ``header_parse``)."""
    fields: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos < len(block) and block[pos : pos + 1] not in (b" ", b"\t", b"\n"):
        end = block.find(b"\n", pos)
        while end != -1 and block[end + 1 : end + 2] in (b" ", b"\t"):
            end = block.find(b"\n", end + 1)
        end = len(block) if end == -1 else end
        name, colon, value = block[pos:end].partition(b":")
        if not colon:
            break
        fields.append((name.rstrip(b" \t"), value.lstrip(b" \t")))
        pos = end + 1
    return fields


def _binary() -> str:
    """GNU Mailutils' pop3d (``/usr/sbin`` is not on every user's PATH)."""
    for candidate in ("/usr/sbin/pop3d", shutil.which("pop3d")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServerStartError("pop3d not found: install mailutils-pop3d (scripts/system-deps.sh)")


class MailutilsPop3d(Managed):
    """pop3d on 127.0.0.1: ``pop3_port`` (plain, STLS offered) and ``pop3s_port`` (TLS).

    The same attribute names as :class:`harness.Dovecot` (``host``, ``pop3_port``,
    ``pop3s_port``, ``ca_file``), so test helpers take either. ``add_user`` works while the
    server runs.
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir).absolute()
        self.conf_path = self.workdir / "pop3d.conf"
        self.domains_dir = self.workdir / "domains"
        self.mail_root = self.workdir / "mail"
        self.log_path = self.workdir / "log" / "pop3d.log"
        self.ca_file = self.workdir / "ssl" / "ca.pem"
        self.pop3_port = 0
        self.pop3s_port = 0
        if os.geteuid() == 0:
            mail = pwd.getpwnam("mail")  # sessions switch to the user's uid; never root
            self.uid, self.gid = mail.pw_uid, mail.pw_gid
        else:
            self.uid, self.gid = os.geteuid(), os.getegid()
        self._proc: subprocess.Popen[bytes] | None = None
        self._argv: list[str] = []
        self._users_lock = threading.Lock()

    @property
    def pid(self) -> int:
        """PID of the pop3d master process."""
        if self._proc is None:
            raise RuntimeError("pop3d is not running")
        return self._proc.pid

    def start(self) -> Self:
        """Write the config (TLS files on first start), start, wait for both ports.

        Ports are chosen on the first start and kept by later ones; a port lost to a race on
        the first start is replaced.
        """
        for sub in ("log", "domains", "mail"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # sessions run as the mail user, below workdir
        for parent in self.workdir.parents if os.geteuid() == 0 else ():
            if not parent.stat().st_mode & stat.S_IXOTH:
                raise ServerStartError(f"{parent} is not traversable by the mail user")
        self._chown(self.mail_root)
        if not self.ca_file.exists():
            make_server_tls(self.ca_file.parent)
        retry_on_port_race(
            self._start_once, self._pick_ports, self.stop, fixed=bool(self.pop3_port)
        )
        return self

    def _pick_ports(self) -> None:
        self.pop3_port, self.pop3s_port = free_port(self.host), free_port(self.host)

    def _start_once(self) -> None:
        if self.pop3_port == self.pop3s_port:
            raise ServerStartError(f"the same port {self.pop3_port} was picked twice")
        self.conf_path.write_text(
            _CONFIG.format(
                workdir=self.workdir,
                tls=self.ca_file.parent,
                host=self.host,
                pop3_port=self.pop3_port,
                pop3s_port=self.pop3s_port,
            )
        )
        self._argv = [_binary(), f"--config-file={self.conf_path}"]
        logged = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._proc = spawn(self._argv, self.log_path)
        what = f"pop3d on ports {self.pop3_port}/{self.pop3s_port}"
        # The master opens every listener before it serves the first connection, and keeps
        # running when one of them cannot bind: a greeting alone does not prove both ports.
        greets = functools.partial(pop3_greets, self.host, self.pop3_port)
        wait_ready(self._proc, greets, what=what, log_path=self.log_path)
        with self.log_path.open("rb") as log:
            log.seek(logged)
            if b"cannot open connection" in log.read():
                raise ServerStartError(f"{what} could not bind:\n{log_tail(self.log_path)}")

    def stop(self) -> None:
        """Stop the master by PID, then every session process it forked. Idempotent.

        Session processes are forks with the master's command line; they outlive it, so
        those below it and those carrying its command line get SIGTERM, then SIGKILL.
        """
        if self._proc is None:
            return
        children = descendants(self._proc.pid)
        stop_process(self._proc)
        terminate_all(children | processes_titled("\0".join(self._argv) + "\0"))

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    security_modes = ("plain", "starttls", "tls")

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Nothing to wait for: a session holds the mbox's dotlock, which :meth:`deliver`
        and :meth:`message_count` wait for."""

    def add_user(self, name: str, password: str) -> MailUser:
        """Add a user to the virtual domain; its login is ``NAME@mailutils.test``."""
        for value in (name, password):
            if not value or any(ch in value for ch in ":/@\n\r\0"):
                raise ValueError("user names and passwords must be non-empty, without : / @ or EOL")
        home = self.mail_root / name
        line = f"{name}:{_crypt(password)}:{self.uid}:{self.gid}::{home}:/usr/sbin/nologin\n"
        passwd = self.domains_dir / DOMAIN
        with self._users_lock:
            text = passwd.read_text() if passwd.exists() else ""
            if any(entry.split(":", 1)[0] == name for entry in text.splitlines()):
                raise ValueError(f"user {name!r} exists already")
            home.mkdir(mode=0o755)
            self._chown(home)
            tmp = passwd.with_name(f".{DOMAIN}.tmp")
            tmp.write_text(text + line)
            tmp.chmod(0o644)
            tmp.rename(passwd)  # pop3d reads the file at every login
        return MailUser(f"{name}@{DOMAIN}", password)

    def mailbox(self, user: str) -> Path:
        """The mbox of ``user`` (its login, or the name before ``@``)."""
        return self.mail_root / user.split("@", 1)[0] / "INBOX"

    def deliver(self, user: str, raw: bytes) -> None:
        """Append ``raw`` to the user's mbox (see :func:`mbox_entry`), under pop3d's dotlock."""
        box = self.mailbox(user)
        with self._dotlock(box):
            with box.open("ab") as handle:
                handle.write(mbox_entry(raw))
            self._chown(box)

    def message_count(self, user: str) -> int:
        """Messages in the user's mbox; waits for a session that holds the mailbox to end."""
        box = self.mailbox(user)
        with self._dotlock(box):
            data = box.read_bytes() if box.exists() else b""
        return data.startswith(b"From ") + data.count(b"\n\nFrom ")

    @contextlib.contextmanager
    def _dotlock(self, box: Path) -> Iterator[None]:
        """Hold ``BOX.lock`` as pop3d does (it keeps it for a whole session)."""
        lock = box.with_name(box.name + ".lock")
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                break
            except FileExistsError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{lock} held for {_LOCK_TIMEOUT:.0f}s") from None
                time.sleep(0.02)
        try:
            os.write(fd, str(os.getpid()).encode())  # for people; pid-check is off
            os.close(fd)
            yield
        finally:
            lock.unlink()

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)
