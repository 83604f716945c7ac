"""Cyrus IMAP's POP3 server (Debian cyrus-pop3d, cyrus-common) unpacked into ``.deps/cyrus``.

A private ``master`` (``-C imapd.conf -M cyrus.conf -D``, in the foreground, stopped by PID)
runs ``pop3d`` on ``pop3_port`` (plain, STLS offered) and ``pop3d -s`` on ``pop3s_port``
(implicit TLS), and ``lmtpd`` on a Unix socket in the workdir; every path is in the
workdir, nothing under /etc or /var is read or written. Users live in a private sasldb
(``saslpasswd2`` from sasl2-bin, also unpacked), so no system account is created; their
INBOX is created by the first delivery (``autocreate_post``), which goes through Cyrus'
own ``deliver`` over LMTP, as an MTA would hand it over.

Cyrus rewrites what it stores: LMTP delivery adds ``Return-Path``, ``Received``,
``X-Cyrus-Session-Id`` and ``X-Sieve`` fields (and ``Date`` when missing), line ends become
CRLF and a final CRLF is added. It offers USER/PASS, APOP (sasldb holds the secrets), SASL
PLAIN/LOGIN, STLS, ``EXPIRE NEVER`` and ``LOGIN-DELAY 0``. UIDLs are
``<uidvalidity>.<uid>``. master runs as root and its services as the ``cyrus`` user.
"""

from __future__ import annotations

import functools
import os
import poplib
import pwd
import subprocess
from pathlib import Path
from typing import Self

from harness.dovecot import MailUser, pop3_greets
from harness.ports import free_port
from harness.process import (
    Managed,
    ServerStartError,
    descendants,
    retry_on_port_race,
    spawn,
    stop_process,
    terminate_all,
    wait_ready,
)
from harness.system_users import missing_as_root
from harness.tls import make_server_tls

DEPS = Path(__file__).resolve().parent.parent / ".deps/cyrus"
BIN = DEPS / "usr/lib/cyrus/bin"
LIBS = f"{DEPS}/usr/lib/x86_64-linux-gnu:{DEPS}/lib/x86_64-linux-gnu"
_IMAPD_CONF = """\
configdirectory: {w}/conf
partition-default: {w}/spool
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {w}/sasldb2
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
allowapop: yes
autocreate_quota: 0
autocreate_post: 1
lmtpsocket: {w}/conf/socket/lmtp
tls_server_cert: {w}/ssl/cert.pem
tls_server_key: {w}/ssl/key.pem
syslog_prefix: ingest-cyrus
"""
_CYRUS_CONF = """\
START {{
  recover cmd="{bin}/ctl_cyrusdb -C {conf} -r"
}}
SERVICES {{
  pop3 cmd="{bin}/pop3d -C {conf}" listen="{host}:{pop3}" prefork=0
  pop3s cmd="{bin}/pop3d -C {conf} -s" listen="{host}:{pop3s}" prefork=0
  lmtpunix cmd="{bin}/lmtpd -C {conf}" listen="{w}/conf/socket/lmtp" prefork=0
}}
EVENTS {{
}}
DAEMON {{
}}
"""


def missing_prerequisites() -> str:
    """Why Cyrus cannot run here, or "" if it can."""
    return missing_as_root("cyrus-pop3d", BIN / "pop3d", "cyrus") or missing_as_root(
        "cyrus-pop3d", DEPS / "usr/sbin/saslpasswd2"
    )


class CyrusPop3d(Managed):
    """Cyrus pop3d on 127.0.0.1: ``pop3_port`` (plain and STLS), ``pop3s_port`` (TLS)."""

    host = "127.0.0.1"
    security_modes = ("plain", "starttls", "tls")
    apop = True

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir).absolute()
        self.conf = self.workdir / "imapd.conf"
        self.log_path = self.workdir / "master.log"
        self.ca_file = self.workdir / "ssl" / "ca.pem"
        self.pop3_port = self.pop3s_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._passwords: dict[str, str] = {}
        cyrus = pwd.getpwnam("cyrus") if os.geteuid() == 0 else None
        self._ids = (cyrus.pw_uid, cyrus.pw_gid) if cyrus else (os.geteuid(), os.getegid())

    def start(self) -> Self:
        missing = missing_prerequisites()
        if missing:
            raise ServerStartError(missing)
        for sub in ("conf/socket", "spool", "ssl"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        if not self.ca_file.exists():
            make_server_tls(self.ca_file.parent).key_file.chmod(0o640)
        self.conf.write_text(_IMAPD_CONF.format(w=self.workdir))
        self._chown_all()
        retry_on_port_race(self._start_once, self._pick_ports, self.stop, fixed=False)
        return self

    def _pick_ports(self) -> None:
        self.pop3_port, self.pop3s_port = free_port(self.host), free_port(self.host)

    def _start_once(self) -> None:
        (self.workdir / "cyrus.conf").write_text(
            _CYRUS_CONF.format(
                bin=BIN, conf=self.conf, w=self.workdir, host=self.host,
                pop3=self.pop3_port, pop3s=self.pop3s_port,
            )
        )  # fmt: skip
        argv = [str(BIN / "master"), "-C", str(self.conf), "-M", str(self.workdir / "cyrus.conf")]
        argv += ["-p", str(self.workdir / "master.pid"), "-D"]
        self._proc = spawn(argv, self.log_path, env=self._env())
        greets = functools.partial(pop3_greets, self.host, self.pop3_port)
        wait_ready(self._proc, greets, what="cyrus master", log_path=self.log_path)

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LD_LIBRARY_PATH": LIBS}

    def _chown_all(self) -> None:
        if os.geteuid() != 0:
            return
        for root, dirs, files in os.walk(self.workdir):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), *self._ids)

    def stop(self) -> None:
        """Stop master by PID, then every service process it started. Idempotent."""
        if self._proc is None:
            return
        children = descendants(self._proc.pid)
        stop_process(self._proc)
        terminate_all(children)
        self._proc = None

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Nothing to wait for: pop3d expunges before it answers QUIT."""

    def add_user(self, name: str, password: str) -> MailUser:
        """A sasldb user (no system account); its INBOX appears with the first delivery."""
        saslpasswd = [str(DEPS / "usr/sbin/saslpasswd2"), "-f", str(self.workdir / "sasldb2")]
        subprocess.run(
            [*saslpasswd, "-p", "-c", name], input=password.encode(), env=self._env(),
            check=True, capture_output=True,
        )  # fmt: skip
        self._chown_all()
        self._passwords[name] = password
        return MailUser(name, password)

    def deliver(self, user: str, raw: bytes) -> None:
        """Hand ``raw`` to lmtpd with Cyrus' ``deliver``, as the cyrus user."""
        argv = [str(BIN / "deliver"), "-C", str(self.conf), user]
        uid, gid = self._ids
        subprocess.run(
            argv, input=raw, env=self._env(), check=True, capture_output=True,
            user=uid, group=gid, extra_groups=[] if os.geteuid() == 0 else None,
        )  # fmt: skip

    def message_count(self, user: str) -> int:
        """Messages in the user's INBOX, as STAT reports them (expunged files may linger)."""
        pop = poplib.POP3(self.host, self.pop3_port, timeout=20)
        try:
            pop.user(user)
            pop.pass_(self._passwords[user])
            count: int = pop.stat()[0]
            return count
        finally:
            pop.quit()
