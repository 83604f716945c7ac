"""A private Dovecot POP3 server (own config, loopback ports, Maildir, passwd-file users).

Never reads ``/etc/dovecot``: ``dovecot -F -c WORKDIR/dovecot.conf`` runs in the foreground as
our child, so it is stopped by its PID. As root, the master stays root and mail processes run
as Debian's ``mail`` user (Dovecot refuses mail access as root); then ``workdir`` and every
parent directory must be traversable by ``mail`` and ``dovecot`` (a ``tempfile.mkdtemp()``
directory is, a pytest ``tmp_path`` is not). As any other user, everything runs as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple, Self

from harness.dovecot_config import Identity, render_config
from harness.ports import free_port
from harness.process import (
    Managed,
    ServerStartError,
    descendants,
    processes_titled,
    retry_on_port_race,
    spawn,
    stop_process,
    terminate_all,
    wait_ready,
)
from harness.tls import make_server_tls

_name_lock = threading.Lock()
_last_usec = 0
_MAX_BASE_DIR = 80  # Dovecot's unix sockets live in base_dir; sun_path holds 108 bytes


class MailUser(NamedTuple):
    """A POP3 login on the test Dovecot."""

    name: str
    password: str


def _identity() -> Identity:
    """Who runs what: ``mail`` for mailboxes when root, else the current user for everything."""
    if os.geteuid() == 0:
        mail = pwd.getpwnam("mail")
        return Identity(mail.pw_uid, mail.pw_gid, "dovecot", "dovenull", privileged=True)
    me = pwd.getpwuid(os.geteuid())
    return Identity(me.pw_uid, me.pw_gid, me.pw_name, me.pw_name, privileged=False)


def pop3_greets(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a POP3 server on ``host:port`` sends its ``+OK`` greeting."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return sock.recv(64).startswith(b"+OK")
    except OSError:
        return False


class Dovecot(Managed):
    """Dovecot on 127.0.0.1: ``pop3_port`` (plain, STLS offered) and ``pop3s_port`` (TLS).

    Its certificate, issued by a fresh test CA (``ca_file``), names ``localhost``,
    ``127.0.0.1`` and ``::1``. ``add_user`` works while the server runs.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        auth_failure_delay: int = 0,
        oauth2_introspection_url: str | None = None,
    ) -> None:
        self.workdir = Path(workdir).absolute()
        self.auth_failure_delay = auth_failure_delay
        self.oauth2_introspection_url = oauth2_introspection_url
        self.identity = _identity()
        self.conf_path = self.workdir / "dovecot.conf"
        self.users_dir = self.workdir / "users"
        self.mail_root = self.workdir / "mail"
        self.log_path = self.workdir / "log" / "dovecot.log"
        self.ca_file = self.workdir / "ssl" / "ca.pem"
        self.pop3_port = 0
        self.pop3s_port = 0
        self.instance = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._base_dir: Path | None = None

    @property
    def pid(self) -> int:
        """PID of the Dovecot master process."""
        if self._proc is None:
            raise RuntimeError("dovecot is not running")
        return self._proc.pid

    def start(self) -> Self:
        """Write the config (TLS files and dirs on first start), start, wait for POP3.

        Ports are chosen on the first start and kept by later ones (stop, then start again
        on the same ports); a port lost to a race on the first start is replaced.
        """
        self._prepare_dirs()
        if not self.ca_file.exists():
            make_server_tls(self.ca_file.parent)
        self.users_dir.mkdir(mode=0o755, exist_ok=True)
        retry_on_port_race(
            self._start_once, self._pick_ports, self.stop, fixed=bool(self.pop3_port)
        )
        return self

    def _pick_ports(self) -> None:
        self.pop3_port, self.pop3s_port = free_port(self.host), free_port(self.host)

    def _start_once(self) -> None:
        if self.pop3_port == self.pop3s_port:
            raise ServerStartError(f"the same port {self.pop3_port} was picked twice")
        self._base_dir = self._pick_base_dir()
        self.instance = f"ingest-test-{self.pop3_port}"  # process titles: dovecot-INSTANCE/...
        self.conf_path.write_text(
            render_config(
                instance=self.instance,
                workdir=self.workdir,
                base_dir=self._base_dir,
                log_path=self.log_path,
                users_dir=self.users_dir,
                tls_dir=self.ca_file.parent,
                host=self.host,
                pop3_port=self.pop3_port,
                pop3s_port=self.pop3s_port,
                identity=self.identity,
                auth_failure_delay=self.auth_failure_delay,
                oauth2_introspection_url=self.oauth2_introspection_url,
            )
        )
        self._proc = spawn(["dovecot", "-F", "-c", str(self.conf_path)], self.log_path)
        wait_ready(
            self._proc,
            lambda: pop3_greets(self.host, self.pop3_port),  # the master binds both ports first
            what=f"dovecot on ports {self.pop3_port}/{self.pop3s_port}",
            log_path=self.log_path,
        )

    def _prepare_dirs(self) -> None:
        for sub in ("log", "state", "ssl"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # auth reads the users file as default_internal_user
        self.mail_root.mkdir(exist_ok=True)
        self._chown(self.mail_root)
        self._check_reachable()

    def _check_reachable(self) -> None:
        """Fail early if the mail user cannot reach ``workdir`` (e.g. under a 0700 parent)."""
        if os.geteuid() != 0:
            return
        for parent in self.workdir.parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                raise ServerStartError(
                    f"{parent} (mode {parent.stat().st_mode & 0o777:o}) is not traversable by "
                    "Dovecot's mail and auth users; use a workdir whose parents all are, "
                    "such as a tempfile.mkdtemp() directory itself"
                )

    def _pick_base_dir(self) -> Path:
        run = self.workdir / "run"
        if len(str(run)) <= _MAX_BASE_DIR:
            run.mkdir(exist_ok=True)
            return run
        return Path(tempfile.mkdtemp(prefix="dovecot-run-"))

    def stop(self) -> None:
        """Stop the master by PID, then its children by PID. Idempotent.

        The master does not end POP3 sessions that are still connected (their processes,
        and the log process serving them, outlive it), so every process that was below the
        master or carries this instance's title gets SIGTERM, then SIGKILL.
        """
        if self._proc is None:
            return
        children = descendants(self._proc.pid)
        stop_process(self._proc)
        terminate_all(children | processes_titled(f"dovecot-{self.instance}/"))
        if self._base_dir is not None and self._base_dir != self.workdir / "run":
            shutil.rmtree(self._base_dir, ignore_errors=True)

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def child_pids(self) -> set[int]:
        """PIDs of every live process below the master (login, auth, pop3, ...)."""
        return descendants(self.pid) if self._proc is not None else set()

    def add_user(self, name: str, password: str) -> MailUser:
        """Add a POP3 user; usable at once, also while Dovecot runs.

        Each user has a passwd-file of its own: Dovecot re-reads a changed passwd-file at
        most once a second, so one shared file would hide users added in the same second.
        """
        for value in (name, password):
            if not value or any(ch in value for ch in ":/\n\r\0"):
                raise ValueError("user names and passwords must be non-empty, without : / or EOL")
        path = self.users_dir / name
        if path.exists():
            raise ValueError(f"user {name!r} exists already")
        ident = self.identity
        tmp = self.users_dir / f".{name}.tmp"
        tmp.write_text(f"{name}:{{PLAIN}}{password}:{ident.uid}:{ident.gid}::{self.home(name)}\n")
        tmp.chmod(0o644)  # auth reads it as default_internal_user
        tmp.rename(path)
        return MailUser(name, password)

    def home(self, user: str) -> Path:
        """The user's home directory; the mailbox is ``home/Maildir``."""
        return self.mail_root / user

    def maildir(self, user: str) -> Path:
        """The user's Maildir, created (with new/, cur/, tmp/) if missing."""
        home, maildir = self.home(user), self.home(user) / "Maildir"
        for path in (home, maildir, maildir / "new", maildir / "cur", maildir / "tmp"):
            if not path.is_dir():
                path.mkdir(mode=0o700)
                self._chown(path)
        return maildir

    def deliver(self, user: str, raw: bytes, *, name: str | None = None) -> Path:
        """Put ``raw`` into the user's ``Maildir/new`` atomically (write in tmp/, then rename).

        Default names follow the Maildir convention with a strictly increasing time part, so
        Dovecot gives messages UIDs (and POP3 message numbers) in delivery order.
        """
        maildir = self.maildir(user)
        name = name or self._unique_name()
        tmp = maildir / "tmp" / name
        with tmp.open("xb") as handle:
            handle.write(raw)
        self._chown(tmp)
        final = maildir / "new" / name
        tmp.rename(final)
        return final

    def _unique_name(self) -> str:
        with _name_lock:
            global _last_usec  # noqa: PLW0603 - one clock for every instance in this process
            _last_usec = max(time.time_ns() // 1000, _last_usec + 1)
            usec = _last_usec
        return f"{usec // 10**6}.M{usec % 10**6:06d}P{os.getpid()}.{socket.gethostname()}"

    def message_count(self, user: str) -> int:
        """Number of messages in the user's mailbox (files in Maildir/new and Maildir/cur)."""
        maildir = self.home(user) / "Maildir"
        return sum(
            1 for sub in ("new", "cur") if (maildir / sub).is_dir()
            for entry in (maildir / sub).iterdir() if entry.is_file()
        )  # fmt: skip

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.identity.uid, self.identity.gid)
