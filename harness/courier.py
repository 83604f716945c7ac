"""Courier's POP3 server (Debian courier-pop, courier-authlib) unpacked into ``.deps/courier``.

Nothing is installed and no system file is written. ``authdaemond`` reads the fixed path
``/etc/courier/authdaemonrc`` and listens on the fixed ``/run/courier/authdaemon/socket``,
so it runs in a private mount namespace (``unshare --mount``, root only) that overlays
``/etc`` with our ``authdaemonrc`` (``passwd``/``shadow``/``group`` stay links to the real
ones, so users added later are seen) and mounts an empty tmpfs on ``/run``. Every session
joins that namespace (``nsenter``) and runs as ``couriertcpd`` would start it, per
connection from :class:`harness.inetd.Inetd`, configured by environment variables (the
settings of ``/etc/courier/pop3d`` and ``pop3d-ssl``):

- ``pop3_port``: ``courierpop3login courierpop3d Maildir``, plain with STLS offered;
- ``pop3s_port``: the same under ``couriertls -server -tcpd`` (implicit TLS).

couriertls needs the system user ``courier`` (scripts/private-servers.sh makes it, as the
package would). Users authenticate with PAM (``authpam``), so they are throw-away system
accounts whose home holds ``Maildir``.

Quirks measured on 1.0.16: CAPA announces ``LOGIN-DELAY 10`` (hard coded, so a client that
honours RFC 2449 waits 10 s between logins) and no APOP; UIDLs are ``UID<n>-<uidvalidity>``;
RETR serves the Maildir file with LF made CRLF.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

from harness.dovecot import MailUser
from harness.inetd import Inetd, InetdPop3
from harness.maildrop import deliver_maildir, maildir_count, make_maildir
from harness.process import (
    descendants,
    spawn,
    stop_process,
    terminate_all,
    wait_ready,
)
from harness.system_users import SystemUsers, missing_as_root
from harness.tls import make_server_tls

DEPS = Path(__file__).resolve().parent.parent / ".deps/courier"
LIBEXEC = DEPS / "usr/lib/courier/courier"
AUTHDAEMOND = DEPS / "usr/lib/courier/courier-authlib/authdaemond"
USER_PREFIX = "ingtcour"
_AUTHDAEMONRC = 'authmodulelist="authpam"\ndaemons=2\nauthdaemonvar=/run/courier/authdaemon\n'
_NAMESPACE = """\
mount --bind /etc "$1" && \
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$2,workdir=$3" /etc && \
mount -t tmpfs tmpfs /run && mkdir -p /run/courier/authdaemon && exec "$4"
"""


def missing_prerequisites() -> str:
    """Why courier's pop3d cannot run here, or "" if it can."""
    tls = missing_as_root("courier-pop", DEPS / "usr/bin/couriertls", "courier")
    return missing_as_root("courier-pop", LIBEXEC / "courierpop3login") or tls


class CourierPop3d(InetdPop3):
    """courier's pop3d: ``pop3_port`` (plain and STLS) and ``pop3s_port`` (implicit TLS)."""

    security_modes = ("plain", "starttls", "tls")
    apop = False

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir).absolute()
        self.home_root = self.workdir / "home"
        self.log_path = self.workdir / "courier.log"
        self.ca_file = self.workdir / "ssl" / "ca.pem"
        self._authd: subprocess.Popen[bytes] | None = None
        login = [str(LIBEXEC / "courierpop3login"), str(LIBEXEC / "courierpop3d"), "Maildir"]
        session = ["sh", str(self.workdir / "session.sh")]
        super().__init__("courier pop3d", [*session, "NO", *login], self.log_path)
        tls = [str(DEPS / "usr/bin/couriertls"), "-server", "-tcpd", *login]
        self._tls_inetd = Inetd([*session, "TLS", *tls], self.log_path)
        self._users = SystemUsers(USER_PREFIX, home=str(self.home_root / "{name}"))

    @property
    def pop3s_port(self) -> int:
        return self._tls_inetd.port

    def missing(self) -> str:
        return missing_prerequisites()

    def prepare(self) -> None:
        """TLS files, the namespace with authdaemond, the session wrapper, the TLS port."""
        self.home_root.mkdir(parents=True, exist_ok=True)
        for path in (self.workdir, self.home_root):
            path.chmod(0o755)
        tls = make_server_tls(self.workdir / "ssl")
        pem = self.workdir / "ssl" / "pop3d.pem"  # courier wants key and chain in one file
        pem.touch(mode=0o600)
        pem.write_bytes(tls.key_file.read_bytes() + tls.cert_file.read_bytes())
        courier = pwd.getpwnam("courier")  # couriertls reads it as this user
        os.chown(pem, courier.pw_uid, courier.pw_gid)
        pid = self._start_authdaemond()
        (self.workdir / "session.sh").write_text(_session_script(pid, pem))
        self._tls_inetd.start()

    def _start_authdaemond(self) -> int:
        upper, work, host_etc = (self.workdir / d for d in ("etc-upper", "etc-work", "host-etc"))
        for path in (upper / "courier", work, host_etc):
            path.mkdir(parents=True, exist_ok=True)
        (upper / "courier" / "authdaemonrc").write_text(_AUTHDAEMONRC)
        for name in ("passwd", "shadow", "group", "gshadow"):
            link = upper / name
            if not link.is_symlink():
                link.symlink_to(host_etc / name)
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _NAMESPACE, "sh"]
        argv += [str(host_etc), str(upper), str(work), str(AUTHDAEMOND)]
        libs = f"{DEPS}/usr/lib:{DEPS}/usr/lib/courier-authlib:{DEPS}/usr/lib/x86_64-linux-gnu"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LD_LIBRARY_PATH": libs}
        self._authd = proc = spawn(argv, self.workdir / "authdaemond.log", env=env)
        socket = Path(f"/proc/{proc.pid}/root/run/courier/authdaemon/socket")
        wait_ready(
            proc,
            socket.exists,
            what="courier authdaemond",
            log_path=self.workdir / "authdaemond.log",
        )
        return proc.pid

    def cleanup(self) -> None:
        """Stop the TLS port, authdaemond (and its workers), remove every user."""
        self._tls_inetd.stop()
        if self._authd is not None:
            children = descendants(self._authd.pid)
            stop_process(self._authd)
            terminate_all(children)
            self._authd = None
        self._users.remove_all(str(self.home_root / "{name}"))

    def wait_idle(self, timeout: float = 10.0) -> None:
        super().wait_idle(timeout)
        self._tls_inetd.wait_idle(timeout)

    def add_user(self, password: str | None = None) -> MailUser:
        """A new system user whose home holds an empty ``Maildir``."""
        user = self._users.add(password)
        make_maildir(self.home_root / user.name / "Maildir", user.name)
        return user

    def deliver(self, user: str, raw: bytes) -> None:
        """A Maildir file in ``new/``, as an MDA writes it (``harness.maildrop``)."""
        deliver_maildir(self.home_root / user / "Maildir", raw, user)

    def message_count(self, user: str) -> int:
        return maildir_count(self.home_root / user / "Maildir")


def _session_script(authd_pid: int, pem: Path) -> str:
    """``sh session.sh NO|TLS ARGV...``: run ARGV in authdaemond's namespace with the
    environment couriertcpd and /etc/courier/pop3d{,-ssl} would give it."""
    libs = f"{DEPS}/usr/lib:{DEPS}/usr/lib/x86_64-linux-gnu"
    return f"""\
mode=$1; shift
if [ "$mode" = TLS ]; then starttls=NO; tls=1; else starttls=YES; tls=0; fi
exec nsenter --mount=/proc/{authd_pid}/ns/mnt env -i LD_LIBRARY_PATH={libs} \\
  PROTO=TCP TCPREMOTEIP=127.0.0.1 TCPREMOTEPORT=0 TCPLOCALIP=127.0.0.1 TCPLOCALPORT=110 \\
  POP3AUTH= POP3AUTH_TLS= POP3_PROXY=0 POP3_TLS=$tls POP3_STARTTLS=$starttls \\
  POP3_TLS_REQUIRED=0 COURIERTLS={DEPS}/usr/bin/couriertls TLS_CERTFILE={pem} \\
  TLS_VERIFYPEER=NONE MAILDIRPATH=Maildir "$@"
"""
